"""Test data for the console pages: a tone WAV, a contact list, an audio message, a
campaign, built with the same service calls as the CLI (fictional numbers and names)."""

from __future__ import annotations

from sqlalchemy import select
from tones import tone

from voicecast.app import Runtime
from voicecast.audio.library import add_audio
from voicecast.campaigns.service import CampaignSpec, DeclarationSpec, create_campaign
from voicecast.contacts.importer import parse_contacts_file
from voicecast.contacts.service import import_contacts
from voicecast.storage.models import AudioMessage, ContactList

NUMBERS = ["01 99 00 00 10", "01 99 00 00 11", "02 61 91 00 12"]


def seed_list(
    runtime: Runtime, name: str = "clients", rows: list[tuple[str, str]] | None = None
) -> None:
    """Import ``rows`` (number, first name) into list ``name`` as ``contacts import`` does."""
    rows = rows or [(n, f"Camille {i}") for i, n in enumerate(NUMBERS)]
    path = runtime.settings.base_dir / f"list-{abs(hash(name))}.csv"
    path.write_text("Téléphone;Prénom\n" + "".join(f"{n};{f}\n" for n, f in rows), encoding="utf-8")
    result = parse_contacts_file(path, default_region="FR")
    with runtime.sessions() as s, s.begin():
        import_contacts(s, name, result)


def seed_audio(runtime: Runtime, name: str = "msg") -> None:
    """Add a one-second tone to the library as ``name`` (``audio add``)."""
    src = tone(runtime.settings.base_dir / f"{name}-src.wav")
    a = runtime.settings.audio
    with runtime.sessions() as s, s.begin():
        add_audio(
            s,
            runtime.audio_store,
            src,
            name,
            max_duration=a.max_duration,
            silence_threshold_dbfs=a.silence_threshold_dbfs,
            loudness=a.loudness_target(),
        )


def seed_campaign(
    runtime: Runtime, name: str = "spring", *, declared: bool = True, hours: str | None = None
) -> None:
    """A draft campaign over list ``clients`` and audio ``msg`` (seeded when missing);
    ``declared``: an informational campaign whose declaration lets it start; ``hours``: its
    own calling window (``mon-fri 10:00-12:00``)."""
    with runtime.sessions() as s:
        has_list = s.scalar(select(ContactList.id).where(ContactList.name == "clients"))
        has_audio = s.scalar(select(AudioMessage.id).where(AudioMessage.name == "msg"))
    if has_list is None:
        seed_list(runtime)
    if has_audio is None:
        seed_audio(runtime)
    declaration = (
        DeclarationSpec(
            purpose="informational",
            audience="b2c",
            sender_name="Société Fictive",
            on_behalf_of="Société Fictive",
            optout_key="9",
            legal_basis="contract",
            hours=hours,
        )
        if declared
        else None
    )
    with runtime.sessions() as s, s.begin():
        create_campaign(
            s,
            CampaignSpec(
                name=name,
                list_name="clients",
                message="msg",
                caller_id="01 62 00 00 00",
                declaration=declaration,
            ),
        )
