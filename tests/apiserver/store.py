"""Object storage with one global resourceVersion, a bounded per-resource
event history and watchers: the parts of etcd + the watch cache that a
client can observe.

Stored objects are never mutated after they are stored: every write stores
a fresh dict, so readers and watchers may hold references without copying.
Callers that read-check-write hold `store.lock` around the whole operation.
"""

import bisect
import queue
import threading

from apimachinery import RESOURCES, expired


class Event:
    __slots__ = ("rv", "type", "key", "obj", "prev")

    def __init__(self, rv, etype, key, obj, prev):
        self.rv, self.type, self.key, self.obj, self.prev = rv, etype, key, obj, prev


def with_rv(obj, rv):
    """Copy of OBJ whose metadata.resourceVersion is RV (shares everything else)."""
    out = dict(obj)
    out["metadata"] = dict(obj["metadata"], resourceVersion=str(rv))
    return out


def key_of(obj):
    return f'{obj["metadata"].get("namespace", "")}/{obj["metadata"]["name"]}'


# Sentinels a watcher's queue can carry besides events.
CLOSE_GRACEFUL = ("CLOSE", "graceful")
CLOSE_RESET = ("CLOSE", "reset")


class Watcher:
    """One watch request: its filter and the queue its HTTP stream drains."""

    def __init__(self, rt, namespace, labels, fields):
        self.rt = rt
        self.namespace = namespace
        self.labels = labels
        self.fields = fields
        self.queue = queue.SimpleQueue()

    def matches(self, obj):
        if obj is None:
            return False
        meta = obj["metadata"]
        if self.namespace and meta.get("namespace") != self.namespace:
            return False
        return self.labels.matches(meta.get("labels")) and self.fields.matches(obj)

    def offer(self, ev):
        """Queue what this watcher sees of EV. An object that starts or stops
        matching the filter is seen as ADDED or DELETED, as the watch cache
        does (cacheWatcher.convertToWatchEvent)."""
        if ev.type == "ADDED":
            if self.matches(ev.obj):
                self.queue.put(("ADDED", ev.obj))
        elif ev.type == "DELETED":
            if self.matches(ev.prev):
                self.queue.put(("DELETED", ev.obj))
        else:
            cur, old = self.matches(ev.obj), self.matches(ev.prev)
            if cur and old:
                self.queue.put(("MODIFIED", ev.obj))
            elif cur:
                self.queue.put(("ADDED", ev.obj))
            elif old:
                self.queue.put(("DELETED", with_rv(ev.prev, ev.rv)))


class Store:
    def __init__(self, history_limit, initial_rv=1000):
        self.lock = threading.RLock()
        self.rv = initial_rv
        self.history_limit = history_limit
        self.objects = {p: {} for (_, _, p) in RESOURCES}
        self.events = {p: [] for (_, _, p) in RESOURCES}
        # Events with rv <= floor are gone; reads and watches from an rv
        # below the floor are Expired.
        self.floor = {p: initial_rv for (_, _, p) in RESOURCES}
        self.watchers = {p: set() for (_, _, p) in RESOURCES}

    # -- reads ---------------------------------------------------------------

    def get(self, rt, namespace, name):
        return self.objects[rt.plural].get(f"{namespace}/{name}")

    def snapshot(self, rt, at_rv=None):
        """All objects of RT as of AT_RV (None: now), as a new dict key->obj.
        Older states are rebuilt by undoing the history after AT_RV."""
        with self.lock:
            objects = dict(self.objects[rt.plural])
            events = self.events[rt.plural]
            if at_rv is None or not events or at_rv >= events[-1].rv:
                if at_rv is not None and at_rv < self.floor[rt.plural]:
                    raise expired("The resourceVersion for the provided list is too old.")
                return objects
            if at_rv < self.floor[rt.plural]:
                raise expired("The resourceVersion for the provided list is too old.")
            for ev in reversed(events):
                if ev.rv <= at_rv:
                    break
                if ev.type == "ADDED":
                    del objects[ev.key]
                else:
                    objects[ev.key] = ev.prev
            return objects

    # -- writes --------------------------------------------------------------

    def put(self, rt, obj, prev):
        """Store OBJ (a fresh dict owned by the store from now on) as the
        next resourceVersion; PREV is the object it replaces, or None."""
        with self.lock:
            self.rv += 1
            obj["metadata"]["resourceVersion"] = str(self.rv)
            key = key_of(obj)
            self.objects[rt.plural][key] = obj
            self._record(rt, Event(self.rv, "MODIFIED" if prev else "ADDED", key, obj, prev))
            return obj

    def remove(self, rt, key, last=None):
        """Delete KEY; returns its final state (LAST if given: the update that
        removed the last finalizer) carrying the deletion's rv."""
        with self.lock:
            prev = self.objects[rt.plural].pop(key)
            self.rv += 1
            final = with_rv(last or prev, self.rv)
            self._record(rt, Event(self.rv, "DELETED", key, final, prev))
            return final

    def rewrite(self, rt, fn):
        """Replace every stored object of RT by fn(obj) without a new
        resourceVersion or event: models a change in how stored data is read
        (a CRD schema change prunes on read)."""
        with self.lock:
            objs = self.objects[rt.plural]
            for key, obj in objs.items():
                objs[key] = fn(obj)

    def _record(self, rt, ev):
        events = self.events[rt.plural]
        events.append(ev)
        # Trim in batches so a full history costs O(1) amortized per write.
        if len(events) > self.history_limit * 1.1 + 1:
            drop = len(events) - self.history_limit
            self.floor[rt.plural] = events[drop - 1].rv
            del events[:drop]
        for w in self.watchers[rt.plural]:
            w.offer(ev)

    def compact(self, to_rv=None):
        """Forget history up to TO_RV (default: now), like etcd compaction."""
        with self.lock:
            target = self.rv if to_rv is None else min(to_rv, self.rv)
            for plural, events in self.events.items():
                cut = bisect.bisect_right(events, target, key=lambda e: e.rv)
                del events[:cut]
                self.floor[plural] = max(self.floor[plural], target)
            return target

    # -- watch ---------------------------------------------------------------

    def watch(self, watcher, from_rv):
        """Register WATCHER. FROM_RV None: the current state as ADDED events,
        then changes; otherwise every change after FROM_RV. Raises Expired
        when the history no longer reaches back to FROM_RV."""
        rt = watcher.rt
        with self.lock:
            if from_rv is None:
                for obj in self.objects[rt.plural].values():
                    if watcher.matches(obj):
                        watcher.queue.put(("ADDED", obj))
            else:
                floor = self.floor[rt.plural]
                if from_rv < floor:
                    raise expired(f"too old resource version: {from_rv} ({floor})")
                events = self.events[rt.plural]
                for ev in events[bisect.bisect_right(events, from_rv, key=lambda e: e.rv):]:
                    watcher.offer(ev)
            self.watchers[rt.plural].add(watcher)

    def unwatch(self, watcher):
        with self.lock:
            self.watchers[watcher.rt.plural].discard(watcher)

    def bookmark(self, watcher):
        """Queue a BOOKMARK at the current rv: every event up to it is
        already in the watcher's queue, because both happen under the lock."""
        with self.lock:
            watcher.queue.put(("BOOKMARK", self.rv))

    def restart_watch_cache(self, rt):
        """What a CRD update does to the watch cache of its resource:
        apiextensions-apiserver's crdHandler (customresource_handler.go,
        updateCustomResourceDefinition -> removeStorage_locked -> tearDown)
        destroys the old storage, whose cacher stops every open watch (the
        stream ends); the new storage's cache starts at the current
        resourceVersion, so a watch that resumes from an older one is
        Expired (410, "too old resource version") and must relist."""
        with self.lock:
            for w in self.watchers[rt.plural]:
                w.queue.put(CLOSE_GRACEFUL)
            self.watchers[rt.plural] = set()
            self.events[rt.plural] = []
            self.floor[rt.plural] = self.rv

    def drop_watchers(self, graceful):
        with self.lock:
            count = 0
            for watchers in self.watchers.values():
                for w in watchers:
                    w.queue.put(CLOSE_GRACEFUL if graceful else CLOSE_RESET)
                    count += 1
            return count
