"""The cost of `lab dashboard` at rest (docs/dashboard.md): CPU, in % of one core, of the
whole machine and of the lab's containers (lab bench's idle_cpu), of the dashboard's process,
of dockerd and of Chromium: with the dashboard running and no page open, with one page open
in headless Chromium, and after it closed again.

    LAB_HOME=... LAB_PROJECT=... .venv/bin/python tests/integration/dashboard_cost.py [SECONDS]

against a running lab at rest (the machine figure is meaningful only with nothing else running).
"""
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chromium_cdp import Chromium
from lab import bench, docker_env
from lab.settings import Settings
from lab.stack import Stack

SECONDS = float(sys.argv[1]) if len(sys.argv) > 1 else 30
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids) -> float:
    """User + system CPU time so far of these processes (gone ones count nothing)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (proc(5))
    return total / TICK


def process_tree(root: int) -> list[int]:
    """``root`` and every process below it (Chromium's renderers and helpers)."""
    children = {}
    for line in subprocess.run(["ps", "-e", "-o", "pid=,ppid="], capture_output=True, text=True).stdout.splitlines():
        pid, ppid = map(int, line.split())
        children.setdefault(ppid, []).append(pid)
    todo, found = [root], []
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def main():
    stack, dc = Stack(Settings.from_env()), docker_env.client()
    dashboard = subprocess.Popen([sys.executable, "-m", "lab", "dashboard", "--port", "0"], stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL, text=True)
    url = dashboard.stdout.readline().strip()
    dockerd = [int(p) for p in subprocess.run(["pidof", "dockerd"], capture_output=True, text=True).stdout.split()]
    browser = Chromium()

    def phase(name):
        procs = {"dashboard": [dashboard.pid], "dockerd": dockerd, "chromium": process_tree(browser.proc.pid)}
        before = {k: cpu_seconds(v) for k, v in procs.items()}
        rest = bench.idle_cpu(dc, stack.settings.project, SECONDS)
        procs["chromium"] = process_tree(browser.proc.pid)
        after = {k: cpu_seconds(v) for k, v in procs.items()}
        return {"phase": name, "machine": rest["machine_percent_of_one_core"],
                "containers": rest["containers_percent_of_one_core"],
                **{k: round((after[k] - before[k]) / rest["seconds"] * 100, 2) for k in procs}}

    try:
        results = [phase("no page open")]
        page = browser.open(url)
        page.wait_for("!!document.querySelector('[data-design]')")
        results.append(phase("one page open"))
        page.close()
        results.append(phase("page closed again"))
    finally:
        browser.close()
        dashboard.terminate()
        dashboard.wait()
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
