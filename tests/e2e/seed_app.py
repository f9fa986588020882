"""The vention-storage README's "Basic Usage" app, unchanged but for the database URL and the
server start: a client written for vention-storage must work against it as it is."""

from __future__ import annotations

import argparse
import os
from datetime import datetime
from typing import Optional

import uvicorn
from fastapi import FastAPI
from sqlmodel import Field, SQLModel

from storage.accessor import ModelAccessor
from storage.bootstrap import bootstrap


# 1. Define your models
class User(SQLModel, table=True):
    id: Optional[int] = Field(default=None, primary_key=True)  # noqa: UP045  (as in the seed)
    name: str
    email: str
    deleted_at: Optional[datetime] = Field(default=None, index=True)  # noqa: UP045


# 2. Quick setup with bootstrap
app = FastAPI()
user_accessor = ModelAccessor(User, "users")

bootstrap(
    app,
    accessors=[user_accessor],
    database_url=os.environ["SEED_APP_DATABASE_URL"],
    create_tables=True,
)

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    uvicorn.run(app, host="127.0.0.1", port=parser.parse_args().port, log_level="warning")
