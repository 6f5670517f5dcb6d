"""The one store check (sweeps.tracking.check_tracking): a sweep's (may create the SQLite file)
and a reader's (``existing=True``: the analysis and ``hetero export``, the file must be there)."""

import pytest

from sweeps.tracking import TrackingError, check_tracking


def test_a_sweep_may_create_its_store_a_reader_may_not(tmp_path):
    uri = f"sqlite:///{tmp_path}/new.db"
    check_tracking(uri)   # a sweep logs into a file it makes
    with pytest.raises(TrackingError, match=r"no MLflow store at sqlite:///.*new2\.db.*"
                                            r"run a sweep first.*--tracking-uri"):
        check_tracking(f"sqlite:///{tmp_path}/new2.db", existing=True)
    assert not (tmp_path / "new2.db").exists()


def test_a_missing_folder_is_named_for_a_sweep(tmp_path):
    with pytest.raises(TrackingError, match="folder .*absent does not exist"):
        check_tracking(f"sqlite:///{tmp_path}/absent/mlflow.db")


@pytest.mark.parametrize("existing", [False, True])
def test_a_file_that_is_no_database_is_refused_for_both(tmp_path, existing):
    (tmp_path / "notes.db").write_text("not a database, " * 100)
    with pytest.raises(TrackingError, match="is not an SQLite database"):
        check_tracking(f"sqlite:///{tmp_path}/notes.db", existing=existing)


@pytest.mark.parametrize("existing, fix", [(False, "to log to a local file"),
                                           (True, "--tracking-uri of the sweep's store")])
def test_an_absent_server_is_one_line_with_the_callers_fix(existing, fix):
    with pytest.raises(TrackingError, match="MLflow tracking server http://127.0.0.1:9 is not "
                                            "reachable") as caught:
        check_tracking("http://127.0.0.1:9", existing=existing, timeout=2)
    assert fix in str(caught.value) and "\n" not in str(caught.value)
