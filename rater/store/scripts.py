"""Loads the Lua scripts of `lua/`, each prefixed with the shared `lib.lua`."""

from __future__ import annotations

from functools import cache
from pathlib import Path

LUA_DIR = Path(__file__).resolve().parent / "lua"


@cache
def source(name: str) -> str:
    lib = (LUA_DIR / "lib.lua").read_text()
    return f"{lib}\n{(LUA_DIR / f'{name}.lua').read_text()}"
