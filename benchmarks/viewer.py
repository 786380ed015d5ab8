"""The embedded viewer in Chromium: first image, scrolling and window drag.

``dicom-service serve --demo`` runs in a temporary data directory (its sample
set holds a 300-slice 512x512 CT, stored through C-STORE, and an open panel
sharing that study). The benchmark logs in as the demo's lead with password
and TOTP (``demo-credentials.txt``) and opens the panel in the standalone
viewer (``/viewer/index.html#panel=ID``) with that session, the way a panel
member reads it; the viewer opens the CT's 300-slice stack. Debian's Chromium
(headless, Playwright). Everything runs inside one private network namespace
on 127.0.0.1 (the script re-executes itself under ``unshare -n`` first).

    .venv/bin/python benchmarks/viewer.py              # 5 page loads, 300 pointer moves
    .venv/bin/python benchmarks/viewer.py --quick      # 2 page loads, 120 pointer moves

Every figure is measured inside the page with ``performance.now()``:

* ``first_image_ms``: from the viewer's open call to the first image drawn
  (the server-rendered JPEG or the raw frame, whichever comes first), median
  of the page loads; ``first_raw_ms``: to the first raw frame windowed in the
  browser; ``prefetch_ms``: until every frame of the series is cached.
* ``scroll_fps``: after the prefetch, one ArrowDown key event per animation
  frame through the whole series; frames drawn per second.
* ``window_drag_fps``: pointer down on the image, one synthesised pointer move
  per animation frame (window/level tool), pointer up; frames drawn per second.
* ``draw_ms``: mean time of one draw (LUT, canvas) during scroll and drag.

Human-readable lines go to stderr; the last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from playwright.sync_api import Browser, sync_playwright  # noqa: E402

from dicom_service.demo import (  # noqa: E402
    CREDENTIALS_FILE,
    DEMO_CT_SLICES,
    DemoAccount,
    read_credentials,
)
from tests.support.peers import (  # noqa: E402
    ensure_private_netns,
    free_port,
    peer_env,
    start_process,
    stop_process,
)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]

# one ArrowDown per animation frame; frames drawn per second
SCROLL_JS = """async (n) => {
  const v = window.viewer;
  v.go(0);
  await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
  const draws = v.metrics.draws, drawMs = v.metrics.drawMs, t0 = performance.now();
  for (let i = 0; i < n; i++) {
    await new Promise((r) => requestAnimationFrame(r));
    v.root.dispatchEvent(new KeyboardEvent("keydown", { key: "ArrowDown", bubbles: true }));
  }
  await new Promise((r) => requestAnimationFrame(r));
  const seconds = (performance.now() - t0) / 1000;
  return { frames: v.metrics.draws - draws, seconds, index: v.index,
           draw_ms: (v.metrics.drawMs - drawMs) / (v.metrics.draws - draws) };
}"""

# pointer down, one move per animation frame, pointer up (window/level tool)
DRAG_JS = """async (n) => {
  const v = window.viewer;
  const c = v.canvas, r = c.getBoundingClientRect();
  const x = r.left + r.width / 2, y = r.top + r.height / 2;
  const at = (type, dx) => c.dispatchEvent(new PointerEvent(type, { bubbles: true,
    pointerId: 1, button: 0, buttons: type === "pointerup" ? 0 : 1,
    clientX: x + dx, clientY: y + dx / 2 }));
  v.setTool("wl");
  at("pointerdown", 0);
  await new Promise((r) => requestAnimationFrame(r));
  const draws = v.metrics.draws, drawMs = v.metrics.drawMs, t0 = performance.now();
  const before = [v.view.width, v.view.center];
  for (let i = 1; i <= n; i++) {
    await new Promise((r) => requestAnimationFrame(r));
    at("pointermove", 20 + (i % 100));
  }
  await new Promise((r) => requestAnimationFrame(r));
  const seconds = (performance.now() - t0) / 1000;
  at("pointerup", 0);
  return { frames: v.metrics.draws - draws, seconds, before, after: [v.view.width, v.view.center],
           draw_ms: (v.metrics.drawMs - drawMs) / (v.metrics.draws - draws) };
}"""


# the requests on the way to the first image: [start, end] after the open call
STEPS_JS = """(openAt) => {
  const steps = {};
  const name = (url) => url.endsWith("/series") ? "qido_series"
    : url.endsWith("/metadata") ? "series_metadata"
    : url.endsWith("/frames/1/rendered") ? "rendered" : url.endsWith("/frames/1") ? "frame" : null;
  for (const r of performance.getEntriesByType("resource")) {
    const key = name(r.name);
    if (key && !steps[key]) {
      steps[key] = [Math.round(r.startTime - openAt), Math.round(r.responseEnd - openAt)];
    }
  }
  return steps;
}"""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def start_demo(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """``serve --demo`` in ``workdir``; (process, base URL) once the demo is loaded."""
    data, log_path = workdir / "data", workdir / "serve.log"
    http_port, dicom_port = free_port(), free_port()
    proc = start_process([sys.executable, "-m", "dicom_service.cli", "serve", "--demo",
                          "--data-dir", str(data), "--http-port", str(http_port),
                          "--dicom-port", str(dicom_port)], log_path=log_path,
                         env=peer_env({"DICOM_SERVICE_COOKIE_SECURE": "false"}))
    deadline = time.monotonic() + 600
    while "demo loaded" not in log_path.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_process(proc)
            raise RuntimeError("serve --demo did not load: "
                               + log_path.read_text(errors="replace")[-1500:])
        time.sleep(0.5)
    return proc, f"http://127.0.0.1:{http_port}"


def login_state(browser: Browser, base: str, account: DemoAccount) -> tuple[Any, int]:
    """Log in through the API (password, then TOTP); the browser state with the
    session cookie, and the ID of the lead's open panel."""
    context = browser.new_context()
    try:
        api = context.request
        first = api.post(f"{base}/api/auth/login",
                         data={"username": account.username, "password": account.password})
        if first.status != 200:
            raise RuntimeError(f"login refused: {first.status} {first.text()[:200]}")
        second = api.post(f"{base}/api/auth/totp", data={"code": account.totp().now()})
        if second.status != 200:
            raise RuntimeError(f"second factor refused: {second.status} {second.text()[:200]}")
        panels = api.get(f"{base}/api/panels").json()
        panel = next(p["id"] for p in panels if p["state"] == "review")
        return context.storage_state(), panel
    finally:
        context.close()


def open_viewer(browser: Browser, url: str, state: Any, slices: int,
                timeout_ms: float) -> tuple[Any, Any]:
    """A fresh context with the session; the viewer page once every frame is cached."""
    context = browser.new_context(viewport={"width": 1280, "height": 800},
                                  device_scale_factor=1, bypass_csp=True, storage_state=state)
    page = context.new_page()
    page.goto(url)
    page.wait_for_function("n => window.viewer && window.viewer.status().loaded === n",
                           arg=slices, timeout=timeout_ms)
    return context, page


def one_load(browser: Browser, url: str, state: Any, slices: int,
             timeout_ms: float) -> dict[str, Any]:
    """Open the viewer in a fresh context (the same session); the page's own timings."""
    context, page = open_viewer(browser, url, state, slices, timeout_ms)
    try:
        m = page.evaluate("() => window.viewer.metrics")
        steps = page.evaluate(STEPS_JS, m["openAt"])
        return {"steps": steps, "first_image_ms": m["firstDrawAt"] - m["openAt"],
                "first_raw_ms": m["firstRawAt"] - m["openAt"],
                "prefetch_ms": m["prefetchDoneAt"] - m["openAt"]}
    finally:
        context.close()


def interaction(browser: Browser, url: str, state: Any, slices: int, timeout_ms: float,
                moves: int) -> dict[str, Any]:
    context, page = open_viewer(browser, url, state, slices, timeout_ms)
    try:
        scroll = page.evaluate(SCROLL_JS, slices - 1)
        if scroll["index"] != slices - 1:
            raise RuntimeError(f"scrolling ended at {scroll['index']}, not {slices - 1}")
        drag = page.evaluate(DRAG_JS, moves)
        if drag["before"] == drag["after"]:
            raise RuntimeError("the window drag did not change the window")
        return {"scroll": scroll, "drag": drag}
    finally:
        context.close()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--loads", type=int, default=5, help="page loads for first image")
    parser.add_argument("--moves", type=int, default=300, help="pointer moves of the drag")
    parser.add_argument("--quick", action="store_true", help="2 page loads, 120 moves")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--json-out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.loads, args.moves = 2, 120
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    ensure_private_netns()
    root = Path(tempfile.mkdtemp(prefix="viewer-bench-", dir=args.workdir))
    result: dict[str, Any] = {
        "benchmark": "viewer",
        "series": f"serve --demo: the sample set's CT, {DEMO_CT_SLICES} x 512^2, Explicit VR LE",
        "env": {"cpus": os.cpu_count(), "python": platform.python_version(),
                "load_1min_at_start": round(os.getloadavg()[0], 2)},
    }
    slices = DEMO_CT_SLICES
    proc = None
    try:
        log("starting serve --demo (generates and stores the sample set)")
        proc, base = start_demo(root)
        lead = read_credentials(root / "data" / CREDENTIALS_FILE)["lead"]
        timeout_ms = 120_000.0
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                result["env"]["chromium"] = browser.version
                state, panel = login_state(browser, base, lead)
                url = f"{base}/viewer/index.html#panel={panel}"
                loads = [one_load(browser, url, state, slices, timeout_ms)
                         for _ in range(args.loads)]
                for i, load in enumerate(loads):
                    log(f"load {i + 1}: first image {load['first_image_ms']:.0f} ms, first raw "
                        f"frame {load['first_raw_ms']:.0f} ms, all {slices} frames "
                        f"cached {load['prefetch_ms']:.0f} ms; requests [start, end] ms: "
                        f"{load['steps']}")
                done = interaction(browser, url, state, slices, timeout_ms, args.moves)
            finally:
                browser.close()
        scroll, drag = done["scroll"], done["drag"]
        result.update({
            "first_image_ms": round(statistics.median(x["first_image_ms"] for x in loads), 1),
            "first_raw_ms": round(statistics.median(x["first_raw_ms"] for x in loads), 1),
            "prefetch_ms": round(statistics.median(x["prefetch_ms"] for x in loads), 1),
            "first_image_ms_runs": [round(x["first_image_ms"], 1) for x in loads],
            "first_image_requests": loads[len(loads) // 2]["steps"],
            "scroll_fps": round(scroll["frames"] / scroll["seconds"], 1),
            "scroll_draw_ms": round(scroll["draw_ms"], 2),
            "window_drag_fps": round(drag["frames"] / drag["seconds"], 1),
            "window_drag_draw_ms": round(drag["draw_ms"], 2),
        })
        log(f"first image (median of {args.loads}): {result['first_image_ms']} ms "
            f"(goal < 300 ms); first raw frame {result['first_raw_ms']} ms")
        log(f"scroll: {scroll['frames']} frames in {scroll['seconds']:.2f} s = "
            f"{result['scroll_fps']} frames/s, {result['scroll_draw_ms']} ms per draw (goal 60)")
        log(f"window drag: {drag['frames']} frames in {drag['seconds']:.2f} s = "
            f"{result['window_drag_fps']} frames/s, {result['window_drag_draw_ms']} ms per draw "
            f"(goal 60)")
    finally:
        if proc is not None:
            stop_process(proc)
        if args.keep:
            log(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    line = json.dumps(result)
    if args.json_out:
        args.json_out.write_text(line + "\n")
    print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
