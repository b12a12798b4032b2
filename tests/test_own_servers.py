"""The test harness's process supervisor: what the outage tests rely on."""

from tests.own_servers import processes
from tests.workers import wait_for


def test_a_process_that_exits_is_started_again_under_a_restarting_supervisor(tmp_path):
    with processes([["this"]], env={}, log_dir=tmp_path, restart=True) as started:  # `python -m this` exits at once
        first = started[0]
        assert wait_for(lambda: started[0] is not first and "started again" in (tmp_path / "process-0.log").read_text(),
                        timeout=30, interval=0.2)  # fmt: skip
    assert first.returncode == 0


def test_without_restart_an_exited_process_stays_exited(tmp_path):
    with processes([["this"]], env={}, log_dir=tmp_path) as started:
        first = started[0]
        first.wait(timeout=30)
        assert started[0] is first
    assert "started again" not in (tmp_path / "process-0.log").read_text()
