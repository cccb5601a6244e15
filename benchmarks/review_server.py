"""A stand-in for the API server's TokenReview and SubjectAccessReview
endpoints, for a router run with ``--auth kubernetes`` on this machine (the
router overhead benchmark, process tests): the token ``token-NAME`` is the
ServiceAccount ``NAME`` of namespace ``default``, any other token is refused,
and RBAC allows every known caller everything.

    python -c "import benchmarks.review_server as r; r.run_review_server(PORT)"

and ``KUBECONFIG=$(review_kubeconfig(dir, PORT))`` for the router.
"""

from __future__ import annotations

import json
from pathlib import Path

from aiohttp import web

TOKEN_PREFIX = "token-"


def token_of(name: str) -> str:
    """The token the stand-in takes as the ServiceAccount ``name``."""
    return TOKEN_PREFIX + name


def username_of(name: str) -> str:
    return f"system:serviceaccount:default:{name}"


async def _token_review(request: web.Request) -> web.Response:
    review = await request.json()
    token = str(review["spec"]["token"])
    if not token.startswith(TOKEN_PREFIX):
        return web.json_response({**review, "status": {"authenticated": False}})
    user = {"username": username_of(token.removeprefix(TOKEN_PREFIX)), "groups": []}
    return web.json_response({**review, "status": {"authenticated": True, "user": user}})


async def _access_review(request: web.Request) -> web.Response:
    return web.json_response({**await request.json(), "status": {"allowed": True}})


def review_app() -> web.Application:
    app = web.Application()
    app.router.add_post("/apis/authentication.k8s.io/v1/tokenreviews", _token_review)
    app.router.add_post("/apis/authorization.k8s.io/v1/subjectaccessreviews", _access_review)
    return app


def run_review_server(port: int) -> None:
    web.run_app(review_app(), host="127.0.0.1", port=port, print=None, access_log=None)


def review_kubeconfig(directory: Path, port: int) -> Path:
    """A kubeconfig that sends a router's reviews to the stand-in on ``port``."""
    path = directory / "review-kubeconfig.json"
    cluster = {"name": "reviews", "cluster": {"server": f"http://127.0.0.1:{port}"}}
    user = {"name": "router", "user": {"token": "router-token"}}
    context = {"name": "reviews", "context": {"cluster": "reviews", "user": "router"}}
    config = {"apiVersion": "v1", "kind": "Config", "clusters": [cluster], "users": [user],
              "contexts": [context], "current-context": "reviews"}  # fmt: skip
    path.write_text(json.dumps(config))
    return path
