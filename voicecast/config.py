"""Configuration: ``voicecast.toml``, then environment overrides, into one typed object.

Layers, later ones win:

1. defaults embedded here (they target the sandbox PBX, SQLite and the simulated network);
2. the TOML file: ``--config PATH``, else ``$VOICECAST_CONFIG``, else ``./voicecast.toml``
   when it exists;
3. environment variables ``VOICECAST_<SECTION>__<KEY>`` (e.g. ``VOICECAST_AMI__SECRET``,
   ``VOICECAST_DATABASE__URL``); values are strings that pydantic converts to the key's
   type (``"6000"`` -> 6000, ``"false"`` -> False), so a secret ``123456`` stays text.

Relative paths (database file, audio store, sandbox folder) are resolved against the folder
of the config file, or the current directory when there is no file.
"""

from __future__ import annotations

import ipaddress
import os
import pwd
import stat
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from voicecast.errors import ConfigError, UnsafeValueError
from voicecast.pbx.validation import build_dial_string

if TYPE_CHECKING:
    from voicecast.audio.convert import LoudnessTarget
    from voicecast.audio.tts import Voice

ENV_PREFIX = "VOICECAST_"
DEFAULT_FILE = "voicecast.toml"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DatabaseSettings(_Section):
    """Where voicecast keeps its data. SQLite (WAL mode) by default."""

    url: str = "sqlite:///var/voicecast.db"


class AmiSettings(_Section):
    """The Asterisk Manager Interface account of the controller (see asterisk-conf/manager.conf).

    Ignored while ``[sandbox] enabled`` is true: the sandbox PBX provides its own.
    """

    host: str = "127.0.0.1"
    port: int = Field(5038, ge=1, le=65535)
    username: str = "voicecast"
    secret: str = ""
    connect_timeout: float = Field(5.0, gt=0, description="seconds")
    action_timeout: float = Field(10.0, gt=0, description="seconds")
    keepalive: float = Field(
        10.0,
        ge=0,
        description="seconds between AMI Pings; a Ping unanswered within action_timeout "
        "counts as a lost connection (a silent network cut); 0 = off",
    )


class FastAgiSettings(_Section):
    """The FastAGI server the controller runs; Asterisk connects to it for each answered call."""

    host: str = "127.0.0.1"
    port: int = Field(4573, ge=1, le=65535)
    url: str = Field(
        "",
        description="agi:// URL Asterisk uses to reach this server; empty = agi://host:port",
    )
    command_timeout: float = Field(120.0, gt=0, description="seconds one AGI command may take")

    @property
    def agi_url(self) -> str:
        """The ``agi://host:port`` URL passed to Asterisk on each Originate."""
        return self.url or f"agi://{self.host}:{self.port}"


class PbxSettings(_Section):
    """How calls leave the PBX and where it finds voicecast's audio.

    Ignored while ``[sandbox] enabled`` is true (the sandbox dials its simulated network).
    """

    dial_string: str = "PJSIP/{number}@trunk"
    originate_context: str = "voicecast-outbound"
    sounds_dir: str = "/var/lib/asterisk/sounds/voicecast"
    sounds_dir_on_pbx: str = Field(
        "", description="the same folder as Asterisk sees it; empty = sounds_dir"
    )
    replies_dir: str = Field(
        "/var/spool/asterisk/voicecast-replies",
        description="where Asterisk writes callees' replies (scenario record nodes)",
    )
    replies_dir_on_pbx: str = Field(
        "", description="the same folder as Asterisk sees it; empty = replies_dir"
    )
    cps: float = Field(
        0.0,
        ge=0,
        le=1000,
        description="the carrier trunk's calls-per-second limit, every campaign together; "
        "0 = only the campaigns' own cps",
    )
    max_channels: int = Field(
        0,
        ge=0,
        le=100000,
        description="the PBX's channel capacity, every campaign together; 0 = no limit",
    )
    nodes: list[PbxNodeSettings] = Field(
        default_factory=list,
        description="several Asterisk nodes (scale-out); empty = the one of [ami] and [pbx]",
    )

    @field_validator("nodes")
    @classmethod
    def _unique_nodes(cls, value: list[PbxNodeSettings]) -> list[PbxNodeSettings]:
        names = [n.name for n in value]
        if len(set(names)) != len(names):
            raise ValueError(f"node names must be unique: {names}")
        return value

    @field_validator("dial_string")
    @classmethod
    def _valid_template(cls, value: str) -> str:
        if "{number}" not in value:
            raise ValueError("dial_string must contain {number}")
        try:
            build_dial_string(value, "+33199000010")
        except UnsafeValueError as exc:
            raise ValueError(str(exc)) from exc
        return value


PBX_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$"
"""Names of PBX nodes and trunks: stored with each attempt and used as pacing keys."""


class TrunkSettings(_Section):
    """One carrier trunk of a PBX node: how calls leave it and how fast it may start them.

    ``cps``: the carrier's calls-per-second limit for this trunk, for every campaign and
    every controller together (enforced through the shared database; unset = only the
    campaigns' own ``cps``).
    """

    name: str = Field(pattern=PBX_NAME_PATTERN)
    dial_string: str = "PJSIP/{number}@trunk"
    cps: float | None = Field(None, gt=0, le=1000, description="calls started per second")

    @field_validator("dial_string")
    @classmethod
    def _valid_template(cls, value: str) -> str:
        return PbxSettings._valid_template(value)


class PbxNodeSettings(_Section):
    """One Asterisk node of a scale-out deployment (``[[pbx.nodes]]``).

    Every controller connects to every node's AMI and spreads its calls over the nodes it
    reaches (a node whose AMI is lost is not used until it is back). ``max_channels`` is the
    node's channel capacity for all controllers together (counted in the shared database).
    ``agi_url``: how this node's Asterisk reaches *this* controller's FastAGI server (empty:
    ``[fastagi] url``); each Originate carries it, so each call's flow comes back to the
    controller that placed it. ``trunks``: the node's carrier trunks; empty = one trunk
    named ``default`` with ``[pbx] dial_string`` and ``[pbx] cps``. The AMI secret is
    ``ami_secret`` or the content of ``ami_secret_file`` (a file only its owner may read).
    """

    name: str = Field(pattern=PBX_NAME_PATTERN)
    ami_host: str = "127.0.0.1"
    ami_port: int = Field(5038, ge=1, le=65535)
    ami_username: str = "voicecast"
    ami_secret: str = ""
    ami_secret_file: str = ""
    agi_url: str = Field("", description="agi://host:port of this controller as the node sees it")
    max_channels: int = Field(100, ge=1, le=100000, description="channels, all controllers")
    trunks: list[TrunkSettings] = Field(default_factory=list)

    @field_validator("trunks")
    @classmethod
    def _unique_trunks(cls, value: list[TrunkSettings]) -> list[TrunkSettings]:
        names = [t.name for t in value]
        if len(set(names)) != len(names):
            raise ValueError(f"trunk names must be unique within a node: {names}")
        return value

    @model_validator(mode="after")
    def _one_secret(self) -> PbxNodeSettings:
        if self.ami_secret and self.ami_secret_file:
            raise ValueError(f"node {self.name}: set ami_secret or ami_secret_file, not both")
        return self

    @field_validator("agi_url")
    @classmethod
    def _valid_agi_url(cls, value: str) -> str:
        if value and (not value.startswith("agi://") or any(c in value for c in " ,\r\n")):
            raise ValueError("agi_url must look like agi://host:port")
        return value


class AudioSettings(_Section):
    """The audio library (messages converted to 8 kHz mono 16-bit WAV) and text-to-speech."""

    store_dir: str = "var/audio"
    max_duration: float = Field(180.0, gt=0, description="seconds; longer files are refused")
    silence_threshold_dbfs: float = Field(
        -50.0, description="a file whose loudest peak is below this is refused as silent"
    )
    normalise_loudness: bool = Field(
        True, description="bring every message to loudness_lufs (ITU-R BS.1770 / EBU R128)"
    )
    loudness_lufs: float = Field(
        -18.0, ge=-40.0, le=-10.0, description="integrated loudness of messages, LUFS"
    )
    true_peak_dbtp: float = Field(
        -2.0, ge=-9.0, le=0.0, description="highest true peak of messages, dBTP"
    )
    tts_voice: str = Field(
        "fr", description="espeak-ng voice (fr, en-gb, en-us...) or piper:/path/model.onnx"
    )
    tts_speed: int = Field(150, ge=80, le=450, description="words per minute")
    tts_cache_dir: str = "var/tts-cache"

    @field_validator("tts_voice")
    @classmethod
    def _valid_voice(cls, value: str) -> str:
        from voicecast.audio.tts import TtsError, Voice

        try:
            Voice.parse(value)
        except TtsError as exc:
            raise ValueError(str(exc)) from exc
        return value

    def loudness_target(self) -> LoudnessTarget | None:
        """What converted audio is normalised to; None when ``normalise_loudness`` is false."""
        from voicecast.audio.convert import LoudnessTarget

        if not self.normalise_loudness:
            return None
        return LoudnessTarget(self.loudness_lufs, self.true_peak_dbtp)

    def tts_voice_for(
        self, name: str | None = None, speed: int | None = None, pitch: int | None = None
    ) -> Voice:
        """The voice to speak with: ``name`` / ``speed`` when given, else the configured ones.

        Raises:
            TtsError: invalid voice, speed or pitch.
        """
        from voicecast.audio.tts import Voice

        return Voice.parse(
            name or self.tts_voice, speed=self.tts_speed if speed is None else speed, pitch=pitch
        )


class DialerSettings(_Section):
    """Defaults of a new campaign's pacing and retry policy."""

    max_channels: int = Field(10, ge=1, le=10000)
    cps: float = Field(1.0, gt=0, le=1000, description="calls started per second")
    ring_timeout: float = Field(30.0, ge=5, le=300, description="seconds")
    retries: int = Field(2, ge=0, le=20)
    retry_delay: float = Field(600.0, ge=0, description="seconds")
    max_call_duration: float = Field(600.0, gt=0, description="seconds before a call is cut")
    alert_after_pbx_failures: int = Field(
        5,
        ge=1,
        le=1000,
        description="calls in a row failing at the PBX (no route, trunk down) before the "
        "campaign is paused with an alert",
    )


class SandboxSettings(_Section):
    """The local sandbox Asterisk with the simulated telephone network."""

    enabled: bool = True
    dir: str = "var/sandbox"
    ami_port: int = Field(5038, ge=1, le=65535)
    mirror: str = "http://deb.debian.org/debian"
    suite: str = "sid"
    dial_string: str = Field(
        "Local/{number}@sim-pstn",
        description="how the sandbox dials: its simulated network; a context or endpoint "
        "that does not exist (e.g. PJSIP/{number}@down) simulates a carrier trunk that is down",
    )

    @field_validator("dial_string")
    @classmethod
    def _valid_template(cls, value: str) -> str:
        return PbxSettings._valid_template(value)


class ReportSettings(_Section):
    """How reports show times."""

    timezone: str = Field("", description="IANA zone for report timestamps; empty = system zone")


NationalList = Literal["bloctel", "us-dnc", "tps"]
NATIONAL_LISTS: tuple[NationalList, ...] = ("bloctel", "us-dnc", "tps")


class ComplianceSettings(_Section):
    """Settings of the compliance gate (rule packs live in ``voicecast/compliance/packs.py``).

    ``generic_hours`` / ``uk_hours`` use the window syntax of
    :func:`voicecast.compliance.calendar.parse_windows` (``"mon-fri 10:00-13:00 14:00-20:00"``).
    """

    hash_key_file: str = Field(
        "var/compliance/hash.key",
        description="secret key of the keyed hashes (HMAC-SHA256) of opt-out and opposition "
        "lists; back it up: without it those lists cannot be matched",
    )
    unknown_region_holidays: Literal["conservative", "national"] = Field(
        "conservative",
        description="France, callee's region unknown: 'conservative' also avoids every "
        "regional holiday (Alsace-Moselle, overseas); 'national' only the 11 national days",
    )
    npv_exemption: bool = Field(
        False,
        description="ARCEP 2022-1583: a system reaching at most 5 distinct numbers per 30 days "
        "may present a non-NPV caller ID; checked against the stored attempts",
    )
    generic_hours: str = Field(
        "mon-fri 10:00-13:00 14:00-20:00",
        description="calling window of countries without a rule pack (default: the strictest "
        "of FR, US and UK)",
    )
    uk_hours: str = Field(
        "mon-sat 08:00-21:00",
        description="UK marketing window: PECR sets no hours, this is a conservative default",
    )
    national_lists: list[NationalList] = Field(
        default_factory=lambda: list(NATIONAL_LISTS),
        description="national opposition lists a marketing campaign must have a fresh copy "
        "of before calling their country; numbers on any imported list are blocked anyway",
    )


class WebSettings(_Section):
    """The console, REST API, ``/healthz`` and ``/metrics`` served by ``voicecast serve``.

    Bound to loopback by default: put a TLS reverse proxy in front (or set ``tls_cert`` and
    ``tls_key``) before opening it to a network. Times: ``session_hours`` hours,
    ``idle_minutes`` minutes, ``lockout_minutes`` minutes, ``login_window`` seconds.
    """

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    secure_cookies: Literal["auto", "always", "never"] = Field(
        "auto",
        description="'auto': cookies are Secure when the request came over HTTPS (directly or "
        "X-Forwarded-Proto from a proxy on loopback)",
    )
    session_hours: float = Field(12.0, gt=0, le=24 * 30, description="a login lasts at most this")
    idle_minutes: float = Field(30.0, gt=0, description="a login idle this long ends")
    max_failed_logins: int = Field(5, ge=1, le=100, description="failures before lockout")
    lockout_minutes: float = Field(15.0, gt=0, description="how long a locked account waits")
    login_rate_per_ip: int = Field(20, ge=1, description="login attempts per address per window")
    login_window: float = Field(300.0, gt=0, description="seconds of the per-address window")
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="addresses of your reverse proxies: only requests from these are "
        "believed about X-Forwarded-For (the client's address, for the login rate limit) "
        "and X-Forwarded-Proto (HTTPS, for Secure cookies); empty = believe no one",
    )
    max_upload_mb: int = Field(50, ge=1, le=2000, description="largest accepted upload")
    uploads_dir: str = Field(
        "var/uploads",
        description="where console uploads (contact files) wait until imported; "
        "relative to the config file's folder",
    )
    tls_cert: str = Field("", description="PEM certificate file: serve HTTPS directly")
    tls_key: str = Field("", description="PEM private key file of tls_cert")
    webhook_timeout: float = Field(10.0, gt=0, le=120, description="seconds per POST")
    webhook_max_attempts: int = Field(8, ge=1, le=30, description="tries before giving up")
    webhook_keep_days: int = Field(
        30,
        ge=1,
        le=3650,
        description="days a finished webhook delivery (it carries the number) is kept",
    )


class JournalSettings(_Section):
    """The proof journal (``voicecast/journal``): hash-chained, append-only.

    Entries name people only by the keyed hash of their number (the ``[compliance]
    hash_key_file`` key). Exported bundles (``voicecast journal export``) are signed with an
    Ed25519 key kept in ``signing_key_file`` (created on first export, mode 0600); give the
    auditor its public key (``voicecast journal public-key``).
    """

    signing_key_file: str = Field(
        "var/compliance/journal-signing.key",
        description="Ed25519 private key (PEM) that signs exported journal bundles",
    )


class RetentionSettings(_Section):
    """How long each kind of personal data is kept (GDPR art. 5(1)(e), storage limitation).

    All values are days. A daily job of ``voicecast serve`` (at ``run_at``, local time of
    the machine) purges or anonymises what expired and journals it; ``voicecast retention
    run --dry-run`` shows what would go. Defaults come from CNIL guidance on prospecting
    (prospects: 3 years after collection or the last contact) and the 5-year civil
    limitation period (Code civil art. 2224) for the evidence of lawful calling.
    """

    contacts_days: int = Field(
        1095,
        ge=1,
        description="a contact with no call attempt for this long after its import or its "
        "last attempt is deleted (CNIL: prospects, 3 years)",
    )
    attempts_days: int = Field(
        365,
        ge=31,
        description="call attempts and inbound calls older than this lose the number they "
        "carry (anonymised; outcomes stay for the reports)",
    )
    recordings_days: int = Field(
        30,
        ge=1,
        le=3650,
        description="callees' recorded replies are deleted at their scenario node's "
        "retention_days, and at the latest this many days after recording",
    )
    consents_days: int = Field(
        1825,
        ge=1,
        description="consent records of a number no contact holds any more are deleted this "
        "long after their last change (proof kept for the 5-year limitation period)",
    )
    journal_days: int = Field(
        1825,
        ge=365,
        description="journal entries older than this are purged (the chain keeps an anchor); "
        "5 years: Code civil art. 2224",
    )
    refusals_days: int = Field(
        365,
        ge=60,
        description="refusals (the 60-day no-call rule, Code conso D223-9) older than this are "
        "deleted",
    )
    run_at: str = Field(
        "03:30",
        pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$",
        description="HH:MM, machine local time, when `voicecast serve` runs the daily purge",
    )


class OrganisationSettings(_Section):
    """The controller of the processing (GDPR art. 4(7)), for the record of processing
    activities (``voicecast register``, GDPR art. 30). Empty values are printed as "to
    complete"."""

    name: str = ""
    address: str = ""
    contact: str = Field("", description="how people reach the controller (e-mail, address)")
    dpo: str = Field("", description="the data protection officer's contact (GDPR art. 37)")
    representative: str = Field("", description="EU representative (GDPR art. 27), if any")


class Settings(_Section):
    """The whole configuration, built once and passed down."""

    database: DatabaseSettings = DatabaseSettings()
    ami: AmiSettings = AmiSettings()
    fastagi: FastAgiSettings = FastAgiSettings()
    pbx: PbxSettings = PbxSettings()
    audio: AudioSettings = AudioSettings()
    dialer: DialerSettings = DialerSettings()
    sandbox: SandboxSettings = SandboxSettings()
    report: ReportSettings = ReportSettings()
    compliance: ComplianceSettings = ComplianceSettings()
    web: WebSettings = WebSettings()
    journal: JournalSettings = JournalSettings()
    retention: RetentionSettings = RetentionSettings()
    organisation: OrganisationSettings = OrganisationSettings()
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    # Not read from the file: where the file was (or the cwd), for relative paths.
    base_dir: Path = Field(default_factory=Path.cwd, exclude=True)
    source: Path | None = Field(None, exclude=True)
    # Not read from the file: which secrets the file itself holds (see check_config_file).
    file_secrets: list[str] = Field(default_factory=list, exclude=True)

    @model_validator(mode="after")
    def _nodes_without_sandbox(self) -> Settings:
        """``[[pbx.nodes]]`` are real Asterisk nodes: the sandbox (one local Asterisk, its
        audio folder, its test clock) must be off, else both would half apply."""
        if self.pbx.nodes and self.sandbox.enabled:
            raise ValueError(
                "[[pbx.nodes]] lists real Asterisk nodes: set [sandbox] enabled = false "
                "(the sandbox is one local Asterisk with its own audio folder)"
            )
        return self

    def path(self, value: str) -> Path:
        """Resolve a configured path: absolute as is, relative against :attr:`base_dir`."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else (self.base_dir / p)

    def database_url(self) -> str:
        """The SQLAlchemy URL with a relative SQLite path made absolute against base_dir."""
        url = self.database.url
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
            return prefix + str(self.path(url[len(prefix) :]))
        return url


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, raw in environ.items():
        if not key.startswith(ENV_PREFIX) or "__" not in key:
            continue
        section, _, name = key[len(ENV_PREFIX) :].lower().partition("__")
        out.setdefault(section, {})[name] = raw  # pydantic converts "6000", "false"
    return out


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def find_config_file(
    explicit: str | os.PathLike[str] | None = None, environ: dict[str, str] | None = None
) -> Path | None:
    """The config file to read: explicit path, ``$VOICECAST_CONFIG``, or ``./voicecast.toml``.

    Raises:
        ConfigError: an explicitly named file does not exist.
    """
    named = explicit or (os.environ if environ is None else environ).get("VOICECAST_CONFIG")
    if named:
        path = Path(named).expanduser()
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        return path.resolve()
    default = Path.cwd() / DEFAULT_FILE
    return default.resolve() if default.is_file() else None


def load_settings(
    path: str | os.PathLike[str] | None = None, environ: dict[str, str] | None = None
) -> Settings:
    """Build :class:`Settings` from defaults, the TOML file and the environment.

    Args:
        path: explicit config file; see :func:`find_config_file` for the search order.
        environ: environment to read overrides from (default ``os.environ``).

    Raises:
        ConfigError: unreadable TOML, an unknown section or key, or an invalid value; the
            message names the file and the key.
    """
    env = dict(os.environ if environ is None else environ)
    file = find_config_file(path, env)
    data: dict[str, Any] = {}
    if file is not None:
        try:
            data = tomllib.loads(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{file}: cannot read the configuration: {exc}") from exc
    data_from_file = data
    data = _merge(data, _env_overrides(env))
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        where = str(file) if file else "environment"
        details = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
            if err["loc"]
            else err["msg"].removeprefix("Value error, ")
            for err in exc.errors()
        )
        raise ConfigError(f"{where}: invalid configuration: {details}") from exc
    settings.base_dir = file.parent if file else Path.cwd()
    settings.source = file
    settings.file_secrets = secrets_in(data_from_file) if file is not None else []
    return settings


# --- deployment security ---------------------------------------------------------------------

ENV_FOR_SECRET = {
    "[ami] secret": "VOICECAST_AMI__SECRET",
    "[database] url": "VOICECAST_DATABASE__URL",
    "[[pbx.nodes]] ami_secret": "a private file named by the node's ami_secret_file",
}
"""The secrets a config file may hold, and the environment variable that can carry each
instead (a file without secrets need not be private)."""


def secrets_in(data: dict[str, Any]) -> list[str]:
    """The secrets a parsed config file holds, by name (keys of :data:`ENV_FOR_SECRET`).

    ``[ami] secret`` when it is not empty; ``[database] url`` when it carries a password
    (``postgresql+psycopg://user:PASSWORD@host/db``). Webhook secrets, API tokens and
    password hashes live in the database; the hash key, the journal signing key and the
    sandbox's AMI secret in files of their own.
    """
    found: list[str] = []
    ami = data.get("ami")
    if isinstance(ami, dict) and str(ami.get("secret") or ""):
        found.append("[ami] secret")
    pbx = data.get("pbx")
    nodes = pbx.get("nodes") if isinstance(pbx, dict) else None
    if isinstance(nodes, list) and any(
        isinstance(n, dict) and str(n.get("ami_secret") or "") for n in nodes
    ):
        found.append("[[pbx.nodes]] ami_secret")
    database = data.get("database")
    url = database.get("url") if isinstance(database, dict) else None
    if isinstance(url, str) and url:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            has_password = bool(make_url(url).password)
        except (ArgumentError, ValueError):
            has_password = "@" in url  # unparsable: assume the worst
        if has_password:
            found.append("[database] url")
    return found


def file_is_private(info: os.stat_result) -> bool:
    """True when only the file's owner may read it: mode 0600 or 0400, or mode 0640 / 0440
    when root owns it (the ``root:voicecast`` pattern of a service reading its config through
    its group, as PostgreSQL accepts for ``ssl_key_file``)."""
    mode = stat.S_IMODE(info.st_mode)
    return mode & 0o077 == 0 or (info.st_uid == 0 and mode & 0o037 == 0)


def check_private_file(path: Path, what: str) -> None:
    """Refuse a secret file that other users may read or change, as OpenSSH refuses an
    unprotected private key (see :func:`file_is_private` for what is accepted).

    Args:
        path: the file (a symbolic link is followed: its target's mode counts).
        what: how the error names it, e.g. ``"[web] tls_key"``.

    Raises:
        ConfigError: the file is readable or writable by group or others; the one-line
            message names the file, its mode and the fix (``chmod 600 PATH``). A missing
            file is not an error here: the caller reports it in its own words.
    """
    try:
        info = path.stat()
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ConfigError(f"{what} {path}: cannot read it ({exc.strerror or exc})") from None
    if not file_is_private(info):
        raise ConfigError(
            f"{what} {path} can be read or changed by other users (mode "
            f"{stat.S_IMODE(info.st_mode):04o}); run: chmod 600 {path}"
        )


def _user_name(uid: int) -> str:
    """``name (uid N)``, or ``uid N`` for a uid without an account."""
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def check_config_file(settings: Settings) -> None:
    """Refuse to run on a config file that other users may change, or read when it holds a
    secret. ``voicecast`` commands check this at start-up, before anything else.

    - Writable by group or others (``mode & 0o022``): refused, whatever it holds. Whoever
      can change it decides which Asterisk gets the AMI secret, where calls are dialled
      (``[pbx] dial_string``: toll fraud) and on which address the console listens.
    - Holding a secret (:func:`secrets_in`: a non-empty ``[ami] secret``, a database URL
      with a password) and readable by group or others: refused, except ``0640`` owned by
      root (:func:`file_is_private`). A config without secrets (the default sandbox setup,
      whose AMI secret lives in ``<sandbox dir>/ami-secret``, mode 0600) may stay readable:
      it tells nothing an attacker can use. A secret passed in the environment
      (``VOICECAST_AMI__SECRET``) never makes the file sensitive.

    - Owned by another user than the one running voicecast (or root): refused, that user
      can change it. In a folder that group or others may write (without the sticky
      bit), or that another user owns: refused, whoever can write there can replace the
      file (OpenSSH's ``StrictModes`` checks the same).

    There is no opt-out: the fix is one ``chmod 600 PATH`` (or moving the secret to the
    environment), and a dialler whose AMI account leaks can be made to call anyone.

    Raises:
        ConfigError: one line naming the file, its mode, what is wrong and the fix.
    """
    path = settings.source
    if path is None:
        return
    try:
        info = path.stat()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o022:
        raise ConfigError(
            f"{path} is writable by other users (mode {mode:04o}): whoever can change it "
            f"decides where calls go; run: chmod 600 {path}"
        )
    me = os.geteuid()
    if info.st_uid not in (me, 0):
        raise ConfigError(
            f"{path} is owned by {_user_name(info.st_uid)}, who can change it and so decide "
            f"where calls go; run: chown {_user_name(me)} {path}"
        )
    folder = path.resolve().parent
    try:
        dinfo = folder.stat()
    except OSError as exc:
        raise ConfigError(f"{folder}: cannot read it ({exc.strerror or exc})") from None
    dmode = stat.S_IMODE(dinfo.st_mode)
    if (dmode & 0o022 and not dmode & stat.S_ISVTX) or dinfo.st_uid not in (me, 0):
        raise ConfigError(
            f"{path} is in {folder}, which other users can change (mode {dmode:04o}, owner "
            f"{_user_name(dinfo.st_uid)}): whoever can write there can replace the file; "
            "keep it in a folder that only you or root can change"
        )
    if settings.file_secrets and not file_is_private(info):
        names = " and ".join(settings.file_secrets)
        env = " / ".join(ENV_FOR_SECRET[n] for n in settings.file_secrets)
        raise ConfigError(
            f"{path} holds {names} and is readable by other users (mode {mode:04o}); "
            f"run: chmod 600 {path} (or pass the secret in {env})"
        )


def is_loopback(host: str) -> bool:
    """True when ``host`` reaches this machine only: ``localhost`` or a loopback address
    (127.0.0.0/8, ``::1``). Empty (every interface), ``0.0.0.0``, ``::`` and other names
    are not; names are not resolved (what they point to can change)."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


ExposedPart = Literal["ami", "fastagi", "web"]


def exposure_warnings(
    settings: Settings, parts: tuple[ExposedPart, ...] = ("ami", "fastagi", "web")
) -> list[str]:
    """What this configuration exposes to the network, one warning line each (empty: all
    on loopback). Logged at WARNING by ``voicecast serve`` and ``campaign start --wait``.

    - ``fastagi``: ``[fastagi] host`` not loopback. FastAGI has no authentication: whoever
      reaches the port can drive the calls handed to it.
    - ``ami``: ``[ami] host`` not loopback (never in sandbox mode, whose AMI is on
      127.0.0.1), or a ``[[pbx.nodes]]`` ``ami_host`` not loopback (then ``[ami]`` is not
      used). AMI is clear text: the secret and every number called cross the network.
    - ``web``: ``[web] host`` not loopback and no ``tls_cert``/``tls_key`` (only when
      ``[web] enabled``).
    """
    out: list[str] = []
    fa, ami, web = settings.fastagi, settings.ami, settings.web
    if "fastagi" in parts and not is_loopback(fa.host):
        out.append(
            f"FastAGI listens on {fa.host or '*'}:{fa.port}, not on loopback: FastAGI has no "
            "authentication, so whoever reaches that port can drive calls in progress; keep "
            '[fastagi] host = "127.0.0.1" with Asterisk on this machine, else let only the '
            "Asterisk host reach that port (firewall, WireGuard)"
        )
    for node in settings.pbx.nodes if "ami" in parts else ():
        if not is_loopback(node.ami_host):
            out.append(
                f"AMI of PBX node {node.name} is reached at {node.ami_host}:{node.ami_port}, "
                "not on loopback: AMI is clear text (the secret and every number called "
                "cross the network); reach it through WireGuard or an SSH tunnel"
            )
    direct = not settings.sandbox.enabled and not settings.pbx.nodes  # [ami] is used
    if "ami" in parts and direct and not is_loopback(ami.host):
        out.append(
            f"AMI is reached at {ami.host}:{ami.port}, not on loopback: AMI is clear text "
            "(the secret and every number called cross the network); reach a remote "
            "Asterisk through an SSH tunnel (ssh -N -L 5038:127.0.0.1:5038 PBX, then "
            '[ami] host = "127.0.0.1") or WireGuard'
        )
    tls = bool(web.tls_cert and web.tls_key)
    if "web" in parts and web.enabled and not is_loopback(web.host) and not tls:
        out.append(
            f"the console listens on {web.host or '*'}:{web.port} without TLS: passwords, "
            "session cookies and personal data cross the network in clear; keep [web] host "
            "on loopback behind a TLS reverse proxy, or set [web] tls_cert and tls_key"
        )
    return out


DEFAULT_CONFIG_TEXT = """\
# voicecast configuration. Every key is optional: the values shown are the defaults.
# Environment variables override keys: VOICECAST_<SECTION>__<KEY>, e.g. VOICECAST_AMI__SECRET.
# Relative paths are relative to this file's folder.

log_level = "INFO"

[database]
# SQLAlchemy URL. SQLite (WAL mode) for one node; postgresql+psycopg://... when several
# controllers share the work.
url = "sqlite:///var/voicecast.db"

[sandbox]
# true: use the local sandbox Asterisk and its simulated telephone network
# (`voicecast sandbox up`); nothing leaves this machine. Set to false to use [ami] and [pbx].
enabled = true
dir = "var/sandbox"
ami_port = 5038
mirror = "http://deb.debian.org/debian"
suite = "sid"
# How the sandbox dials: its simulated network. To see what a trunk that is down does to a
# campaign, point it at an endpoint that does not exist: "PJSIP/{number}@down".
dial_string = "Local/{number}@sim-pstn"

[ami]
# Your Asterisk's AMI account (asterisk-conf/manager.conf, user [voicecast]).
host = "127.0.0.1"
port = 5038
username = "voicecast"
secret = ""
connect_timeout = 5.0      # seconds
action_timeout = 10.0      # seconds
# A Ping every this many seconds; no answer within action_timeout = connection lost
# (reconnect, reconcile the calls in flight). 0 = off.
keepalive = 10.0

[fastagi]
# The FastAGI server voicecast runs; Asterisk connects here for each answered call.
host = "127.0.0.1"
port = 4573
url = ""                   # how Asterisk reaches it; empty = agi://host:port
command_timeout = 120.0    # seconds

[pbx]
# Dial string of the carrier trunk; {number} is the callee in E.164 (+ and digits only).
dial_string = "PJSIP/{number}@trunk"
originate_context = "voicecast-outbound"
# Where voicecast copies campaign audio so that Asterisk can play it, and the same folder as
# Asterisk sees it (differs only when Asterisk runs in a chroot or a container).
sounds_dir = "/var/lib/asterisk/sounds/voicecast"
sounds_dir_on_pbx = ""
# Where Asterisk writes the callees' replies (scenario record nodes; kept for the node's
# retention_days), and the same folder as Asterisk sees it. Asterisk must be able to write it.
replies_dir = "/var/spool/asterisk/voicecast-replies"
replies_dir_on_pbx = ""
# The carrier's limits for every campaign together: calls started per second on the trunk,
# and channels on the PBX. 0 = only each campaign's own cps and max_channels.
cps = 0.0
max_channels = 0
# Several Asterisk nodes (and several controllers sharing one PostgreSQL database): list
# them; they replace [ami] and the dial_string above. See docs/deployment.md. Replace
# `nodes = []` with one [[pbx.nodes]] table per node, at the end of this section:
nodes = []
# [[pbx.nodes]]
# name = "pbx-a"
# ami_host = "10.0.0.11"
# ami_port = 5038
# ami_username = "voicecast"
# ami_secret_file = "/etc/voicecast/pbx-a.secret"   # or ami_secret = "..." (then chmod 600)
# agi_url = "agi://10.0.0.2:4573"                   # this controller as pbx-a reaches it
# max_channels = 60                                  # channels, every controller together
# trunks = [{ name = "carrier1", dial_string = "PJSIP/{number}@carrier1", cps = 10.0 }]

[audio]
store_dir = "var/audio"
max_duration = 180.0          # seconds
silence_threshold_dbfs = -50.0
# Every message (uploaded or spoken) is brought to the same integrated loudness, measured as
# ITU-R BS.1770 / EBU R128 define it, with true peaks at most true_peak_dbtp. -18 LUFS is
# the level AES TD1008 recommends for speech (EBU R128's -23 LUFS is for broadcast
# programmes); -2 dBTP leaves headroom for the G.711 encoding. false keeps each file's level.
normalise_loudness = true
loudness_lufs = -18.0         # LUFS, -40 to -10
true_peak_dbtp = -2.0         # dBTP, -9 to 0
# Text-to-speech (`voicecast audio say`): espeak-ng voice (`voicecast audio voices`: fr,
# en-gb, en-us...) or "piper:/path/to/model.onnx" (Piper installed by you; nothing is
# downloaded), speed in words per minute (80 to 450), and where spoken texts are cached.
tts_voice = "fr"
tts_speed = 150
tts_cache_dir = "var/tts-cache"

[dialer]
# Defaults for new campaigns.
max_channels = 10
cps = 1.0                     # calls started per second
ring_timeout = 30.0           # seconds
retries = 2                   # extra attempts for busy / no_answer / congestion
retry_delay = 600.0           # seconds
max_call_duration = 600.0     # seconds
# A campaign whose calls fail at the PBX this many times in a row (Originate refused, no
# route, trunk down) is paused with an alert (console, webhook campaign.alert, journal).
alert_after_pbx_failures = 5

[report]
timezone = ""                 # IANA zone for report times; empty = this machine's zone

[compliance]
# Secret key of the keyed hashes (HMAC-SHA256) that store opt-outs and opposition lists
# (Bloctel, US DNC, TPS). Created on first use. BACK IT UP: without it they cannot be matched.
hash_key_file = "var/compliance/hash.key"
# France, callee's region unknown: "conservative" also avoids regional holidays
# (Alsace-Moselle Good Friday and 26 Dec, overseas abolition days); "national" does not.
unknown_region_holidays = "conservative"
# ARCEP 2022-1583: only a system reaching at most 5 distinct numbers per 30 days may present
# a caller ID that is not an NPV (0162, 0163, 0270...). Checked against the stored attempts.
npv_exemption = false
# Calling window of countries without a rule pack (default: the strictest of FR, US, UK).
generic_hours = "mon-fri 10:00-13:00 14:00-20:00"
# UK marketing calls: PECR sets no hours; a conservative default.
uk_hours = "mon-sat 08:00-21:00"
# National opposition lists a marketing campaign needs a fresh copy of (Bloctel at most 30
# days old, US DNC 31, TPS 28) before calling their country. Numbers on any imported list
# are blocked whatever this says. Remove "bloctel" only if your counsel confirms that
# consent-only canvassing (loi 2025-594, from 2026-08-11) replaces the Bloctel scrub.
national_lists = ["bloctel", "us-dnc", "tps"]

[web]
# The supervisor console, REST API (/api/v1), /healthz and /metrics, served by
# `voicecast serve`. Loopback by default: put a TLS reverse proxy in front (or set
# tls_cert and tls_key) before opening it to a network. Create the first admin with
# `voicecast user add NAME --role admin`.
enabled = true
host = "127.0.0.1"
port = 8080
secure_cookies = "auto"       # auto: Secure when the request came over HTTPS
session_hours = 12.0          # a login lasts at most this
idle_minutes = 30.0           # a login idle this long ends
max_failed_logins = 5         # failed logins before the account is locked
lockout_minutes = 15.0
login_rate_per_ip = 20        # login attempts per address per login_window seconds
login_window = 300.0
# Your reverse proxies' addresses (e.g. ["127.0.0.1"] for nginx on this machine): only
# they are believed about X-Forwarded-For / X-Forwarded-Proto. Empty: no one is.
trusted_proxies = []
max_upload_mb = 50
uploads_dir = "var/uploads"   # console uploads wait here until imported (keep it private)
tls_cert = ""                 # PEM files: serve HTTPS directly
tls_key = ""
webhook_timeout = 10.0        # seconds per webhook POST
webhook_max_attempts = 8      # tries (with back-off) before a delivery is marked failed
webhook_keep_days = 30        # finished deliveries (they carry the number) are then deleted

[journal]
# The proof journal: every gate decision, call attempt, message drop, opt-out, consent
# change, import, erasure and console/API change, hash-chained and append-only
# (`voicecast journal verify`). Exported bundles are signed with this Ed25519 key, created
# on first export; give auditors `voicecast journal public-key`.
signing_key_file = "var/compliance/journal-signing.key"

[retention]
# Days each kind of personal data is kept (GDPR art. 5(1)(e)). `voicecast serve` purges
# daily at run_at (this machine's local time); `voicecast retention run --dry-run` shows
# what would go. Opt-outs are never purged: they are keyed hashes and must be honoured.
contacts_days = 1095          # contacts without any call for 3 years (CNIL, prospects)
attempts_days = 365           # call attempts and inbound calls then lose their number (>= 31)
recordings_days = 30          # callees' replies: node's retention_days, at most this
consents_days = 1825          # consents of numbers no contact holds, after their last change
journal_days = 1825           # 5 years (Code civil art. 2224), at least 365
refusals_days = 365           # the 60-day no-call rule needs at least 60
run_at = "03:30"

[organisation]
# The controller of the processing, printed in the record of processing (`voicecast register`).
name = ""
address = ""
contact = ""                  # how people exercise their rights (e-mail, postal address)
dpo = ""                      # data protection officer, if any
representative = ""           # EU representative (GDPR art. 27), if any
"""
