"""The REST API and auth, in process on a FakeBackend (tests/integration has the real kernels)."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import jsonschema
import pytest
import websockets

from kernelyard.discovery import KernelSpec
from kernelyard.server.openapi import openapi_document
from kernelyard.testing import FAKE_SPEC, FakeBackend

from ..wsclient import kernel_socket, stream_text
from .conftest import Served, serving

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(10)]

MISSING = "00000000-0000-0000-0000-000000000000"


async def test_start_list_get_delete(served: Served) -> None:
    async with served.http() as http:
        started = await http.post("api/kernels", json={})
        assert started.status_code == 201
        model = started.json()
        assert started.headers["location"] == f"/api/kernels/{model['id']}"
        # The answer comes while the kernel starts (a cluster's may queue for minutes).
        assert sorted(model) == ["connections", "execution_state", "id", "last_activity", "name"]
        assert (model["name"], model["execution_state"], model["connections"]) == (
            "fake",
            "starting",
            0,
        )
        await served.kernels.get(model["id"]).running()
        model = (await http.get(f"api/kernels/{model['id']}")).json()
        assert sorted(model) == [
            "connections",
            "encrypted",
            "execution_state",
            "id",
            "last_activity",
            "name",
        ]
        assert (model["execution_state"], model["encrypted"]) == ("idle", False)
        assert [k["id"] for k in (await http.get("api/kernels")).json()] == [model["id"]]
        assert (await http.get(f"api/kernels/{model['id']}")).json()["id"] == model["id"]
        assert served.backend.get(model["id"]).cwd == str(Path(".").resolve())
        assert (await http.delete(f"api/kernels/{model['id']}")).status_code == 204
        gone = await http.get(f"api/kernels/{model['id']}")
    assert gone.status_code == 404
    assert gone.json() == {"message": f"Kernel does not exist: {model['id']}", "reason": None}
    assert served.backend.kernels == {}


async def test_bad_requests_get_json_errors(served: Served) -> None:
    async with served.http() as http:
        unknown = await http.post("api/kernels", json={"name": "no-such-kernel"})
        assert unknown.status_code == 404
        assert "no-such-kernel" in unknown.json()["message"]
        for body in (b"{not json", b"[1]"):
            assert (await http.post("api/kernels", content=body)).status_code == 400
        for bad in (
            {"path": "../../etc"},
            {"path": "a\x00b"},
            {"path": 7},
            {"name": 7},
            {"env": {"KERNEL_X": 3}},
            {"env": ["KERNEL_X"]},
            {"kernel_id": "not-a-uuid"},
        ):
            response = await http.post("api/kernels", json=bad)
            assert response.status_code == 400, bad
            assert response.json()["message"], bad
        for method, path in [
            ("GET", f"api/kernels/{MISSING}"),
            ("DELETE", f"api/kernels/{MISSING}"),
            ("POST", f"api/kernels/{MISSING}/restart"),
            ("POST", f"api/kernels/{MISSING}/interrupt"),
            ("GET", "api/kernelspecs/nope"),
            ("GET", "kernelspecs/nope/logo-64x64.png"),
            ("GET", "kernelspecs/fake/..%2Fkernel.json"),
            ("GET", "no/such/route"),
        ]:
            response = await http.request(method, path)
            assert response.status_code == 404, (method, path)
            assert "message" in response.json()
    assert served.backend.kernels == {}  # nothing was started by any of them


async def test_a_start_of_an_unknown_type_is_a_404_at_once(served: Served) -> None:
    async with served.http() as http:
        unknown = await http.post("api/kernels", json={"name": "nope"})
    assert unknown.status_code == 404
    assert "nope" in unknown.json()["message"]
    assert served.kernels.models() == []


async def test_env_allow_list_and_a_chosen_kernel_id(served: Served) -> None:
    kid = str(uuid.uuid4())
    env = {"KERNEL_COLOR": "blue", "JPY_SESSION_NAME": "n.ipynb", "LD_PRELOAD": "/evil.so"}
    assert await served.start(kernel_id=kid, env=env) == kid
    assert served.backend.get(kid).env == {"KERNEL_COLOR": "blue", "JPY_SESSION_NAME": "n.ipynb"}
    assert await served.start(kernel_id=kid) == kid  # the running one, not a second
    assert list(served.backend.kernels) == [kid]


async def test_a_path_sets_the_kernels_directory_under_the_root(tmp_path: Path) -> None:
    (tmp_path / "sub" / "dir").mkdir(parents=True)
    async with serving(root_dir=str(tmp_path)) as served:
        kid = await served.start(path="sub/dir/notebook.ipynb")
        assert served.backend.get(kid).cwd == str(tmp_path / "sub" / "dir")
        other = await served.start(path="missing/x.ipynb")
        assert served.backend.get(other).cwd == str(tmp_path)


async def test_max_kernels_counts_running_kernels() -> None:
    async with serving(max_kernels=2) as served:
        await served.start()
        await served.start()
        async with served.http() as http:
            over = await http.post("api/kernels", json={})
        assert over.status_code == 403
        assert "at most 2" in over.json()["message"]
        assert len(served.backend.kernels) == 2


async def test_interrupt_and_restart_over_rest(served: Served) -> None:
    kid = await served.start()
    async with kernel_socket(served, kid) as ws, served.http() as http:
        await ws.execute("x = 1")
        interrupted = await http.post(f"api/kernels/{kid}/interrupt")
        assert interrupted.status_code == 204
        restarted = await http.post(f"api/kernels/{kid}/restart")
        assert restarted.status_code == 200
        assert restarted.json()["id"] == kid
        reply, _ = await ws.execute("'x' in dir()")  # the same socket, a new kernel
        assert reply.content["execution_count"] == 1
        served.backend.crash(kid)
        served.backend.get(kid).lifecycle.supervise(False)  # dead for good
        dead = await http.post(f"api/kernels/{kid}/interrupt")
        assert dead.status_code == 409
        assert dead.json()["message"]


async def test_kernelspecs_and_resources(tmp_path: Path) -> None:
    (tmp_path / "logo-64x64.png").write_bytes(b"\x89PNG fake")
    (tmp_path / "kernel.js").write_text("define([], {})")
    spec = KernelSpec(name="with-logo", argv=("x",), language="python", resource_dir=tmp_path)
    async with serving(FakeBackend([FAKE_SPEC, spec])) as served, served.http() as http:
        listing = (await http.get("api/kernelspecs")).json()
        assert listing["default"] == "fake"
        assert sorted(listing["kernelspecs"]) == ["fake", "with-logo"]
        model = listing["kernelspecs"]["with-logo"]
        assert model["spec"]["language"] == "python"
        assert (await http.get("api/kernelspecs/with-logo")).json() == model
        assert sorted(model["resources"]) == ["kernel.js", "logo-64x64"]
        logo = await http.get(model["resources"]["logo-64x64"])
        assert (logo.status_code, logo.content) == (200, b"\x89PNG fake")
        assert logo.headers["content-type"] == "image/png"
        assert logo.headers["cache-control"] == "max-age=2592000"
        head = await http.head(model["resources"]["logo-64x64"])
        assert (head.status_code, head.content) == (200, b"")
        script = await http.get(model["resources"]["kernel.js"])
        assert script.text == "define([], {})"
        for path in ("kernelspecs/with-logo/nope.png", "kernelspecs/with-logo/..%2Fx"):
            assert (await http.get(path)).status_code == 404


async def test_api_status_and_the_openapi_document(served: Served) -> None:
    kid = await served.start()
    async with served.http() as http, kernel_socket(served, kid):
        status = (await http.get("api/status")).json()
        assert (status["kernels"], status["connections"]) == (1, 1)
        document = (await http.get("api/openapi.json")).json()
        assert document == openapi_document("/")
        schemas = {"components": document["components"]}
        for path, name in [
            ("api/kernels", "KernelList"),
            (f"api/kernels/{kid}", "Kernel"),
            ("api/kernelspecs", "KernelSpecs"),
            ("api/kernelspecs/fake", "KernelSpec"),
            ("api/status", "Status"),
            ("api", "Version"),
            ("api/kernels/0-0-0-0-0", "Error"),
        ]:
            body = (await http.get(path)).json()
            jsonschema.validate(body, {**schemas, "$ref": f"#/components/schemas/{name}"})


async def test_auth_token_sources_and_xsrf(served: Served) -> None:
    async with httpx.AsyncClient(base_url=served.url) as client:
        version = await client.get("api")
        assert version.status_code == 200  # open, as in jupyter_server
        forbidden = await client.get("api/kernels")
        assert forbidden.status_code == 403
        assert forbidden.json() == {"message": "Forbidden", "reason": None}
        wrong = await client.get("api/kernels", headers={"Authorization": "token wrong"})
        assert wrong.status_code == 403
        assert (await client.get("api/kernels", params={"token": served.token})).status_code == 200
        bearer = {"Authorization": f"Bearer {served.token}"}
        assert (await client.get("api/kernels", headers=bearer)).status_code == 200
        assert (await client.get("api/kernels")).status_code == 200  # the login cookie
        refused = await client.post("api/kernels", json={})
        assert refused.status_code == 403
        assert "_xsrf" in refused.json()["message"]
        xsrf = {"X-XSRFToken": client.cookies["_xsrf"]}
        assert (await client.post("api/kernels", json={}, headers=xsrf)).status_code == 201
    assert len(served.backend.kernels) == 1


async def test_websockets_need_the_token_too(served: Served) -> None:
    kid = await served.start()
    url = f"{served.ws_url}api/kernels/{kid}/channels?session_id=x"
    with pytest.raises(websockets.InvalidStatus) as anonymous:
        async with websockets.connect(url):
            pass
    assert anonymous.value.response.status_code == 403
    with pytest.raises(websockets.InvalidStatus) as missing:
        async with websockets.connect(
            f"{served.ws_url}api/kernels/{MISSING}/channels?token={served.token}"
        ):
            pass
    assert missing.value.response.status_code == 404
    async with kernel_socket(served, kid) as ws:
        _, outputs = await ws.execute("print('in')")
    assert stream_text(outputs) == "in\n"


async def test_no_token_means_open_access() -> None:
    async with serving(token="") as served, httpx.AsyncClient(base_url=served.url) as client:
        assert (await client.post("api/kernels", json={})).status_code == 201
