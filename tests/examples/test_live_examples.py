"""The examples of docs/live.md: the page in a real headless Chromium (live updates, and a
reconnect across a server restart that loses and repeats nothing) and the Python follower in a
process of its own. The doc shows the example files as they are."""

from __future__ import annotations

import re
import select
import subprocess
import sys
import time
from pathlib import Path

from support.servers import ROOT, Server, free_port, machine_app

ADMIN = {"X-User": "admin"}
DOC = (ROOT / "docs" / "live.md").read_text()


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC, flags=re.S)


def test_the_doc_shows_the_example_files_as_they_are() -> None:
    assert blocks("html") == [(ROOT / "examples" / "live.html").read_text()]
    follower = (ROOT / "examples" / "follow_changes.py").read_text()
    python = blocks("python")
    assert python and all(block in follower for block in python[:1])


def add_cell(server: Server, name: str) -> None:
    response = server.client.post("/workcells/", json={"name": name}, headers=ADMIN)
    assert response.status_code == 201, response.text


def test_the_follower_prints_each_write_of_another_process(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'machine.db'}"
    with machine_app(url) as server:
        add_cell(server, "Cell A")
        command = [sys.executable, "-m", "examples.follow_changes", "--database-url", url]
        caught_up = subprocess.run(
            [*command, "--after", "0", "--no-follow", "--component", "workcells"],
            cwd=ROOT, capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        assert re.fullmatch(r"\d+ create workcells 1 admin \{.*'Cell A'.*\}\n", caught_up.stdout)
        with subprocess.Popen(
            command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        ) as follower:
            try:
                # It follows "from now" once it has opened the database, which takes a moment
                # (longer on a busy machine): write until it prints one of the writes.
                assert follower.stdout is not None
                deadline = time.monotonic() + 60
                added = 0
                while not select.select([follower.stdout], [], [], 1.0)[0]:
                    assert time.monotonic() < deadline and follower.poll() is None
                    added += 1
                    add_cell(server, f"Cell {added}")
                line = follower.stdout.readline()
                assert re.fullmatch(r"\d+ create workcells \d+ admin \{.*'Cell \d+'.*\}\n", line)
            finally:
                follower.terminate()


def shown(page: object, count: int) -> list[str]:
    """The page's lines about work cells (the app writes other rows too), once there are
    ``count`` of them (or after 20 s)."""
    locator = page.locator("#changes li", has_text=" workcells ")  # type: ignore[attr-defined]
    deadline = time.monotonic() + 20
    while locator.count() < count and time.monotonic() < deadline:
        time.sleep(0.05)
    texts: list[str] = locator.all_inner_texts()
    return texts


def test_the_page_shows_writes_live_and_misses_none_across_a_restart(
    browser: object, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'machine.db'}"
    port = free_port()
    page = browser.new_page()  # type: ignore[attr-defined]
    with machine_app(url) as other:
        with machine_app(url, port) as server:
            page.goto(f"http://127.0.0.1:{port}/live")
            page.wait_for_function("source.readyState === EventSource.OPEN")
            add_cell(server, "Cell A")
            add_cell(other, "Cell B")  # written by another server
            assert [text.split(" ", 2)[2] for text in shown(page, 2)] == [
                'create workcells 2: {"id":2,"name":"Cell B","location":"","deleted_at":null}',
                'create workcells 1: {"id":1,"name":"Cell A","location":"","deleted_at":null}',
            ]
        # The page's server is gone; the page keeps retrying. Writes go on elsewhere.
        for name in ("Cell C", "Cell D", "Cell E"):
            add_cell(other, name)
        with machine_app(url, port):
            texts = shown(page, 5)
    assert len(texts) == 5, texts
    assert [re.search(r'"name":"([^"]+)"', text).group(1) for text in texts] == [  # type: ignore[union-attr]
        "Cell E", "Cell D", "Cell C", "Cell B", "Cell A"
    ]  # fmt: skip
