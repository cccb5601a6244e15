"""Moving a session between workers, in one place: the wire
(:mod:`~bridgepool.moves.wire`), the mover's pure step rules
(:mod:`~bridgepool.moves.driver`), the typed client for the move endpoints
(:mod:`~bridgepool.moves.client`) and the mover that drives them
(:mod:`~bridgepool.moves.mover`). The worker's state machine, the other
side of each step, is ``bridgepool_worker.moves``."""
