from __future__ import annotations

from pathlib import Path

import pytest

from rater.history.migrations import MigrationError, load_migrations


def test_the_shipped_migrations_are_numbered_from_one() -> None:
    migrations = load_migrations()
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    assert migrations[0].name == "init" and "PARTITION BY RANGE (period)" in migrations[0].sql


def test_a_gap_or_a_bad_name_is_refused(tmp_path: Path) -> None:
    (tmp_path / "001_a.sql").write_text("SELECT 1;")
    (tmp_path / "003_c.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="migration 002 missing"):
        load_migrations(tmp_path)
    (tmp_path / "003_c.sql").unlink()
    (tmp_path / "2-b.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match=r"named NNN_name\.sql"):
        load_migrations(tmp_path)
