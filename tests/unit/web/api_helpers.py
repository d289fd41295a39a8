"""Helpers of the REST API tests: fictional contact files, a tone WAV, a startable campaign."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

NUMBERS = ["+33199000100", "+33261910101", "+33353010102"]

CSV_GOOD = (
    "Téléphone;Prénom;Nom;Commentaire\n"
    "01 99 00 01 00;Camille;Exemple;écoute\n"
    "02 61 91 01 01;Louis;Démo;\n"
    "+33 3 53 01 01 02;Inès;Modèle;\n"
)
CSV_WITH_REJECTS = (
    "phone,first_name\n"
    "+33199000200,Hugo\n"
    "not a number,Léa\n"
    "+33199000200,Hugo bis\n"
    "01 99 00 02 01,Jade\n"
    ",Nina\n"
)

CAMPAIGN = {
    "name": "spring",
    "list": "clients",
    "text": "Bonjour {first_name}, ceci est un rappel.",
    "caller_id": "01 62 00 00 00",
    "purpose": "informational",
    "audience": "b2c",
    "sender": "Société Fictive",
    "on_behalf_of": "Société Fictive",
    "optout_key": "9",
    "legal_basis": "contract",
    "retries": 1,
}


async def import_csv(
    client: TestClient, headers: dict[str, str], list_name: str = "clients", text: str = CSV_GOOD
) -> Any:
    """POST a CSV to the list; return the JSON answer (asserting 200)."""
    resp = await client.post(
        f"/api/v1/lists/{list_name}/contacts",
        data=text.encode("utf-8"),
        headers={**headers, "Content-Type": "text/csv"},
    )
    body = await resp.json()
    assert resp.status == 200, body
    return body


async def create_campaign(
    client: TestClient, headers: dict[str, str], **changes: Any
) -> dict[str, Any]:
    """Create the list ``clients`` (when missing) and the campaign :data:`CAMPAIGN`."""
    resp = await client.get("/api/v1/lists/clients", headers=headers)
    if resp.status == 404:
        await import_csv(client, headers)
    resp = await client.post("/api/v1/campaigns", json={**CAMPAIGN, **changes}, headers=headers)
    body = await resp.json()
    assert resp.status == 201, body
    return dict(body)
