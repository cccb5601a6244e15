"""Active health tracking of one worker: ``fall`` failed checks in a row mark it
down, ``rise`` passed checks in a row mark it up. A refused connection on a real
call marks it down at once (nothing is listening; waiting for ``fall`` more
checks would only send more calls to a dead worker)."""

from __future__ import annotations

from bridgepool.spec import RouterHealthSettings


class HealthTracker:
    def __init__(self, settings: RouterHealthSettings, *, up: bool = True) -> None:
        self.settings = settings
        self.up = up
        self._passes = 0
        self._fails = 0

    def check_passed(self) -> bool:
        """Record a passed check; returns True if this marked the worker up."""
        self._fails = 0
        self._passes += 1
        if not self.up and self._passes >= self.settings.rise:
            self.up = True
            return True
        return False

    def check_failed(self) -> bool:
        """Record a failed check; returns True if this marked the worker down."""
        self._passes = 0
        self._fails += 1
        if self.up and self._fails >= self.settings.fall:
            self.up = False
            return True
        return False

    def mark_down(self) -> bool:
        """The worker is known to be unreachable; returns True if it was up."""
        was_up = self.up
        self.up = False
        self._passes = 0
        self._fails = self.settings.fall
        return was_up
