"""The dashboard's actions (POST only; auth and CSRF are checked before
any of these run). Each returns the path to go back to."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlencode

from ..broker_admin import JobState
from ..keys import check_name, check_task_name

if TYPE_CHECKING:
    from .state import Dashboard
    from .views import Action


def _queue(form: dict[str, str]) -> str:
    return check_name("queue", form.get("queue", ""))


def _job_path(form: dict[str, str]) -> str:
    return "/job?" + urlencode({"id": form.get("id", ""), "queue": form.get("queue", "")})


async def pause(dash: Dashboard, form: dict[str, str]) -> str:
    await dash.admin.pause(_queue(form))
    return f"/queues/{_queue(form)}"


async def resume(dash: Dashboard, form: dict[str, str]) -> str:
    await dash.admin.resume(_queue(form))
    return f"/queues/{_queue(form)}"


async def purge(dash: Dashboard, form: dict[str, str]) -> str:
    if form.get("confirm") != "yes":
        raise ValueError("tick the box to confirm the purge")
    state = JobState(form.get("state", "waiting"))
    await dash.admin.purge(_queue(form), state,
                           result_ttl_ms=int(dash.app.result_ttl_s * 1000),
                           reason="purged from the dashboard")
    return f"/queues/{_queue(form)}?state={state.value}"


async def cancel(dash: Dashboard, form: dict[str, str]) -> str:
    await dash.app.job(form.get("id", ""), _queue(form)).cancel("cancelled from the dashboard")
    return _job_path(form)


async def replay(dash: Dashboard, form: dict[str, str]) -> str:
    await dash.app.replay_dead([form.get("id", "")], queue=_queue(form))
    return _job_path(form)


async def concurrency(dash: Dashboard, form: dict[str, str]) -> str:
    """An operator's most running jobs per key of a task (or of one key):
    a count, 'off', or empty to go back to the code's."""
    task = check_task_name(form.get("task", ""))
    key = form.get("key") or None
    value = form.get("max_concurrency", "").strip().lower()
    if value == "":
        await dash.limits.clear_concurrency(_queue(form), task, key=key)
    elif value == "off" or value.isdigit():
        await dash.limits.set_concurrency(_queue(form), task,
                                          None if value == "off" else int(value), key=key)
    else:
        raise ValueError(f"max running per key must be a count, 'off' or empty, got {value!r}")
    return f"/queues/{_queue(form)}"


ACTIONS: dict[str, Action] = {
    "/actions/pause": pause,
    "/actions/resume": resume,
    "/actions/purge": purge,
    "/actions/cancel": cancel,
    "/actions/replay": replay,
    "/actions/concurrency": concurrency,
}
