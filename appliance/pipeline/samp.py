"""SAMP for the pipeline's web interface: register with a hub, bridge SAMP messages to the page.

The app registers with whichever SAMP hub is running (``SAMP_HUB`` or ``~/.samp``, through
``astropy.samp``), subscribes to ``table.load.votable``, ``table.select.rowList``,
``table.highlight.row`` and ``coord.pointAt.sky`` (as notifications and as calls), and turns each
message into a small JSON event that the web app pushes to every open page over its WebSocket.
Tables the app sent itself carry the table-id ``appliance-pipeline:<item id>``, so a row selection
or highlight coming back (from TOPCAT) names the observation and the rows of its catalog.

It sends a catalog with ``table.load.votable``: to one client by name (``topcat``) as a call whose
reply says whether the table loaded, or to every subscribed client as a notification.

No hub at start is not an error: the bridge retries in the background and reports its state.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from typing import Any

MTYPES_IN = ("table.load.votable", "table.select.rowList", "table.highlight.row", "coord.pointAt.sky")
TABLE_PREFIX = "appliance-pipeline:"

Event = dict[str, Any]


def table_id(iid: str) -> str:
    return TABLE_PREFIX + iid


def event_from_message(mtype: str, params: dict[str, Any], sender: str = "") -> Event:
    """One SAMP message -> the JSON event the page gets (pure: tested without a hub)."""
    ev: Event = {"type": mtype, "sender": sender, "t_server_ms": time.time() * 1000.0}
    tid = str(params.get("table-id", ""))
    if tid:
        ev["table_id"] = tid
        ev["item"] = tid[len(TABLE_PREFIX):] if tid.startswith(TABLE_PREFIX) else None
    if mtype == "table.load.votable":
        ev["url"], ev["name"] = str(params.get("url", "")), str(params.get("name", ""))
    elif mtype == "table.select.rowList":
        rows = params.get("row-list", [])
        if isinstance(rows, str):  # senders that can only send strings (jsamp messagesender): "[1,2]"
            rows = re.findall(r"-?\d+", rows)
        ev["rows"] = [int(r) for r in rows]
    elif mtype == "table.highlight.row":
        ev["rows"] = [int(params.get("row", -1))]
    elif mtype == "coord.pointAt.sky":
        ev["ra"], ev["dec"] = float(params["ra"]), float(params["dec"])
    return ev


class SampBridge:
    """A SAMP client that hands every received message to ``on_event`` (called from SAMP's thread)."""

    def __init__(self, on_event: Callable[[Event], None], name: str = "appliance-pipeline",
                 retry_seconds: float = 2.0):
        self.on_event = on_event
        self.name = name
        self.retry_seconds = retry_seconds
        self.client: Any = None
        self.error = ""
        self.received = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._names: dict[str, str] = {}

    # -- connection ---------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        c = self.client
        return c is not None and c.is_connected

    def connect_once(self) -> bool:
        from astropy.samp import SAMPIntegratedClient

        with self._lock:
            if self.connected:
                return True
            c = SAMPIntegratedClient(name=self.name, addr="127.0.0.1",
                                     description="appliance radio image pipeline web interface")
            try:
                c.connect()
            except Exception as e:  # noqa: BLE001 - no hub yet: reported, retried
                self.error = f"no SAMP hub ({type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''})"
                return False
            for m in MTYPES_IN:
                c.bind_receive_notification(m, self._notification)
                c.bind_receive_call(m, self._call)
            self.client, self.error = c, ""
            return True

    def start(self) -> None:
        """Connect now if a hub runs, else keep trying every ``retry_seconds`` in the background."""
        if self.connect_once():
            return

        def loop() -> None:
            while not self._stop.wait(self.retry_seconds):
                if self.connect_once():
                    return

        self._thread = threading.Thread(target=loop, name="samp-connect", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        c, self.client = self.client, None
        if c is not None and c.is_connected:
            try:
                c.disconnect()
            except Exception:  # noqa: BLE001 - the hub may be gone already
                pass

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"connected": self.connected, "error": self.error, "received": self.received}
        if self.connected:
            try:
                out["clients"] = self.clients()
            except Exception as e:  # noqa: BLE001 - hub went away between the two calls
                out["error"] = f"hub: {e}"
        return out

    # -- receiving ----------------------------------------------------------------------------------

    def _emit(self, sender: str, mtype: str, params: dict) -> None:
        self.received += 1
        try:
            ev = event_from_message(mtype, params, self._sender_name(sender))
        except (KeyError, TypeError, ValueError) as e:
            ev = {"type": "error", "message": f"{mtype} from {sender}: bad parameters ({e})"}
        self.on_event(ev)

    def _sender_name(self, sender: str) -> str:
        if sender not in self._names:  # one hub round trip per sender, not per message
            try:
                self._names[sender] = str(self.client.get_metadata(sender).get("samp.name", sender))
            except Exception:  # noqa: BLE001 - the name is cosmetic
                return sender
        return self._names[sender]

    def _notification(self, private_key: str, sender_id: str, mtype: str, params: dict, extra: dict) -> None:
        self._emit(sender_id, mtype, params)

    def _call(self, private_key: str, sender_id: str, msg_id: str, mtype: str, params: dict,
              extra: dict) -> None:
        self._emit(sender_id, mtype, params)
        self.client.reply(msg_id, {"samp.status": "samp.ok", "samp.result": {}})

    # -- sending ------------------------------------------------------------------------------------

    def clients(self) -> list[dict[str, Any]]:
        """Registered clients by id and name, and whether each takes ``table.load.votable`` yet."""
        c = self.client
        takes = set(c.get_subscribed_clients("table.load.votable"))
        return [{"id": cid, "name": str(c.get_metadata(cid).get("samp.name", "")), "loads_tables": cid in takes}
                for cid in c.get_registered_clients()]

    def find_client(self, name: str, wait: float = 0.0) -> tuple[str | None, str]:
        """The id of the client named ``name`` that takes tables, or None and why not.

        A client declares its metadata (its name) before its subscriptions: a TOPCAT that has just
        started is seen by name a moment before it takes ``table.load.votable``; ``wait`` seconds
        cover that gap instead of failing the first send.
        """
        deadline = time.monotonic() + wait
        while True:
            named = [x for x in self.clients() if x["name"].lower() == name.lower()]
            ok = next((x["id"] for x in named if x["loads_tables"]), None)
            if ok is not None:
                return ok, ""
            if not named:
                return None, f"no SAMP client named {name!r} registered with the hub"
            if time.monotonic() >= deadline:
                return None, f"SAMP client {name!r} is registered but does not take table.load.votable"
            time.sleep(0.2)

    def send_table(self, url: str, tid: str, name: str, to: str | None = None,
                   timeout: int = 30) -> dict[str, Any]:
        """``table.load.votable`` to client ``to`` (by samp.name; a call, waits for its reply) or to all.

        Never raises: a hub that refuses or times out comes back as ``{"ok": False, "error": ...}``.
        """
        if not self.connected:
            return {"ok": False, "error": self.error or "not connected to a SAMP hub"}
        msg = {"samp.mtype": "table.load.votable", "samp.params": {"url": url, "table-id": tid, "name": name}}
        try:
            if to is None:
                self.client.notify_all(msg)
                return {"ok": True, "sent": "all"}
            cid, why = self.find_client(to, wait=5.0)
            if cid is None:
                return {"ok": False, "error": why}
            reply = self.client.call_and_wait(cid, msg, str(timeout))
        except Exception as e:  # noqa: BLE001 - SAMPProxyError, a hub gone, a timeout: all one answer
            first = str(e).splitlines()[0][:200] if str(e) else ""
            return {"ok": False, "error": f"SAMP hub: {type(e).__name__}: {first}"}
        status = reply.get("samp.status", "")
        return {"ok": status == "samp.ok", "sent": cid, "reply": reply}
