import subprocess

from handler.gpu_check import check_gpu
from handler.progress import ProgressThrottle


def test_progress_is_throttled_to_twice_a_second() -> None:
    now = {"t": 0.0}
    sent: list[dict] = []
    throttle = ProgressThrottle(sent.append, min_interval_s=0.5, clock=lambda: now["t"])
    for step in range(40):  # 40 updates over 2 seconds
        now["t"] = step * 0.05
        throttle("execute", step * 2.5)
    assert 4 <= len(sent) <= 5
    assert all(set(m) == {"stage", "percent"} for m in sent)
    assert all(0 <= m["percent"] <= 100 for m in sent)


def _proc(code: int, out: str, err: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.CompletedProcess(["nvidia-smi"], code, out, err)


def test_gpu_check_reports_missing_driver() -> None:
    report = check_gpu(which=lambda _: None)
    assert not report.ok and "nvidia-smi" in report.message


def test_gpu_check_reports_driver_failure() -> None:
    report = check_gpu(run=lambda cmd: _proc(9, "", "NVIDIA-SMI has failed"), which=lambda _: "/x")
    assert not report.ok and "NVIDIA-SMI has failed" in report.message


def test_gpu_check_passes_with_a_gpu() -> None:
    report = check_gpu(
        run=lambda cmd: _proc(0, "NVIDIA H200, 570.1, 143771 MiB\n"), which=lambda _: "/x"
    )
    assert report.ok and "H200" in report.message


def test_gpu_check_refuses_an_old_driver() -> None:
    old = check_gpu(
        run=lambda cmd: _proc(0, "NVIDIA L4, 550.54.15, 23034 MiB\n"),
        which=lambda _: "/x",
        min_driver=580,
    )
    assert not old.ok and "driver too old" in old.message and "550.54.15" in old.message
    new = check_gpu(
        run=lambda cmd: _proc(0, "NVIDIA L4, 580.65.06, 23034 MiB\n"),
        which=lambda _: "/x",
        min_driver=580,
    )
    assert new.ok
