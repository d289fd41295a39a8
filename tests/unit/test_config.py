"""voicecast.config: defaults, the TOML file, environment overrides, relative paths."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from voicecast.config import (
    DEFAULT_CONFIG_TEXT,
    DEFAULT_FILE,
    Settings,
    exposure_warnings,
    find_config_file,
    load_settings,
)
from voicecast.errors import ConfigError


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in an empty folder, without the developer's VOICECAST_* variables."""
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.delenv("VOICECAST_CONFIG", raising=False)
    return work


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults(isolated: Path) -> None:
    settings = load_settings(environ={})
    assert settings.model_dump() == Settings().model_dump()
    assert settings.source is None
    assert settings.base_dir == isolated
    assert settings.database.url == "sqlite:///var/voicecast.db"
    assert settings.ami.host == "127.0.0.1"
    assert settings.ami.port == 5038
    assert settings.ami.username == "voicecast"
    assert settings.ami.secret == ""
    assert settings.fastagi.port == 4573
    assert settings.fastagi.agi_url == "agi://127.0.0.1:4573"
    assert settings.pbx.dial_string == "PJSIP/{number}@trunk"
    assert settings.sandbox.enabled is True
    assert settings.dialer.retries == 2
    assert settings.dialer.retry_delay == 600.0
    assert settings.log_level == "INFO"
    assert settings.database_url() == f"sqlite:///{isolated / 'var' / 'voicecast.db'}"


def test_toml_file_values(tmp_path: Path) -> None:
    path = write(
        tmp_path / "etc" / "voicecast.toml",
        """
log_level = "DEBUG"

[ami]
host = "10.0.0.5"
port = 5039
secret = "from-file"
action_timeout = 2.5

[fastagi]
host = "0.0.0.0"
port = 4574
url = "agi://10.0.0.9:4574"

[pbx]
dial_string = "PJSIP/{number}@carrier"

[sandbox]
enabled = false

[dialer]
cps = 2.5
retries = 3
""",
    )
    settings = load_settings(path, environ={})
    assert settings.source == path.resolve()
    assert settings.base_dir == path.resolve().parent
    assert settings.log_level == "DEBUG"
    assert (settings.ami.host, settings.ami.port, settings.ami.secret) == (
        "10.0.0.5",
        5039,
        "from-file",
    )
    assert settings.ami.action_timeout == 2.5
    assert settings.ami.username == "voicecast"  # untouched keys keep their default
    assert settings.fastagi.agi_url == "agi://10.0.0.9:4574"
    assert settings.pbx.dial_string == "PJSIP/{number}@carrier"
    assert settings.sandbox.enabled is False
    assert (settings.dialer.cps, settings.dialer.retries) == (2.5, 3)


def test_relative_paths_resolve_against_the_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "site"
    path = write(
        folder / "voicecast.toml",
        '[database]\nurl = "sqlite:///var/x.db"\n[audio]\nstore_dir = "media/audio"\n',
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    settings = load_settings(str(path), environ={})
    base = folder.resolve()
    assert settings.database_url() == f"sqlite:///{base / 'var' / 'x.db'}"
    assert settings.database_url().startswith("sqlite:////")
    assert settings.path(settings.audio.store_dir) == base / "media" / "audio"
    assert settings.path("var/sandbox") == base / "var" / "sandbox"
    assert settings.path("/srv/voicecast") == Path("/srv/voicecast")
    assert settings.path("~/sounds") == tmp_path / "home" / "sounds"


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:////srv/voicecast/voicecast.db",
        "sqlite:///:memory:",
        "sqlite://",
        "postgresql+psycopg://voicecast:pw@db.example/voicecast",
    ],
)
def test_database_urls_kept_as_they_are(url: str, tmp_path: Path) -> None:
    path = write(tmp_path / "voicecast.toml", f'[database]\nurl = "{url}"\n')
    assert load_settings(path, environ={}).database_url() == url


def test_environment_overrides(tmp_path: Path) -> None:
    path = write(tmp_path / "voicecast.toml", '[ami]\nsecret = "from-file"\nport = 5039\n')
    settings = load_settings(
        path,
        environ={
            "VOICECAST_AMI__SECRET": "s3cret",
            "VOICECAST_AMI__PORT": "6000",
            "VOICECAST_SANDBOX__ENABLED": "false",
            "VOICECAST_DIALER__CPS": "2.5",
            "VOICECAST_DATABASE__URL": "sqlite:////srv/vc.db",
            "VOICECAST_PBX__DIAL_STRING": "Local/{number}@sim-pstn",
            "VOICECAST_CONFIG": "/not/read/from/environ",  # no "__": not an override
            "VOICECAST_NOTHING": "x",
            "OTHER__THING": "x",
        },
    )
    assert settings.ami.secret == "s3cret"
    assert settings.ami.port == 6000
    assert isinstance(settings.ami.port, int)
    assert settings.sandbox.enabled is False
    assert settings.dialer.cps == 2.5
    assert settings.database.url == "sqlite:////srv/vc.db"
    assert settings.pbx.dial_string == "Local/{number}@sim-pstn"


def test_environment_overrides_without_a_file() -> None:
    settings = load_settings(environ={"VOICECAST_AMI__SECRET": "s3cret"})
    assert settings.source is None
    assert settings.ami.secret == "s3cret"


def test_os_environ_is_read_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOICECAST_AMI__SECRET", "s3cret")
    assert load_settings().ami.secret == "s3cret"


@pytest.mark.parametrize("secret", ["123456", "true", "1e3"])
def test_environment_secret_that_looks_like_a_number(secret: str) -> None:
    settings = load_settings(environ={"VOICECAST_AMI__SECRET": secret})
    assert settings.ami.secret == secret


def test_unknown_key_is_named(tmp_path: Path) -> None:
    path = write(tmp_path / "voicecast.toml", '[ami]\nsecrte = "x"\n')
    with pytest.raises(ConfigError, match=r"ami\.secrte") as info:
        load_settings(path, environ={})
    assert str(path.resolve()) in str(info.value)


def test_unknown_section_and_top_level_key_are_named(tmp_path: Path) -> None:
    path = write(tmp_path / "voicecast.toml", 'loglevel = "DEBUG"\n[amii]\nport = 1\n')
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    assert "loglevel" in str(info.value)
    assert "amii" in str(info.value)


def test_unknown_environment_key_is_named() -> None:
    with pytest.raises(ConfigError, match=r"ami\.sekret") as info:
        load_settings(environ={"VOICECAST_AMI__SEKRET": "x"})
    assert "environment" in str(info.value)
    with pytest.raises(ConfigError, match="nosuchsection"):
        load_settings(environ={"VOICECAST_NOSUCHSECTION__KEY": "x"})


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ("[ami]\nport = 70000\n", "ami.port"),
        ("[ami]\nport = 0\n", "ami.port"),
        ('[ami]\nport = "five"\n', "ami.port"),
        ("[dialer]\ncps = 0\n", "dialer.cps"),
        ("[dialer]\nring_timeout = 1\n", "dialer.ring_timeout"),
        ('log_level = "TRACE"\n', "log_level"),
        ("[sandbox]\nenabled = 3\n", "sandbox.enabled"),
        ('[pbx]\ndial_string = "PJSIP/trunk"\n', "pbx.dial_string"),
    ],
)
def test_invalid_value_is_named(toml: str, key: str, tmp_path: Path) -> None:
    path = write(tmp_path / "voicecast.toml", toml)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_settings(path, environ={})


def test_invalid_environment_value_is_named() -> None:
    with pytest.raises(ConfigError, match=r"ami\.port"):
        load_settings(environ={"VOICECAST_AMI__PORT": "70000"})


def test_dial_string_without_number_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path / "voicecast.toml", '[pbx]\ndial_string = "PJSIP/+33199000010@trunk"\n')
    with pytest.raises(ConfigError, match=r"pbx\.dial_string.*\{number\}"):
        load_settings(path, environ={})
    with pytest.raises(ConfigError, match=r"pbx\.dial_string"):
        load_settings(environ={"VOICECAST_PBX__DIAL_STRING": "PJSIP/x@trunk"})


def test_bad_toml_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path / "broken.toml", "[ami\nport = \n")
    with pytest.raises(ConfigError, match="cannot read the configuration") as info:
        load_settings(path, environ={})
    assert str(path.resolve()) in str(info.value)


def test_non_utf8_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes('[ami]\nusername = "h\xe9l\xe8ne"\n'.encode("latin-1"))
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    assert str(path.resolve()) in str(info.value)


def test_explicit_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match="not found"):
        load_settings(missing, environ={})
    with pytest.raises(ConfigError, match="not found"):
        find_config_file(str(missing))
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path, environ={})  # a folder is not a config file


def test_config_file_search_order(
    tmp_path: Path, isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert find_config_file() is None
    local = write(isolated / DEFAULT_FILE, '[ami]\nsecret = "local"\n')
    assert find_config_file() == local.resolve()
    assert load_settings(environ={}).ami.secret == "local"

    from_env = write(tmp_path / "env.toml", '[ami]\nsecret = "from-env"\n')
    monkeypatch.setenv("VOICECAST_CONFIG", str(from_env))
    assert find_config_file() == from_env.resolve()
    assert load_settings().ami.secret == "from-env"
    # an explicit environment mapping is the only one read
    assert load_settings(environ={}).ami.secret == "local"
    assert load_settings(environ={"VOICECAST_CONFIG": str(from_env)}).ami.secret == "from-env"

    explicit = write(tmp_path / "explicit.toml", '[ami]\nsecret = "explicit"\n')
    assert load_settings(explicit, environ={}).ami.secret == "explicit"

    with pytest.raises(ConfigError, match="not found"):
        load_settings(environ={"VOICECAST_CONFIG": str(tmp_path / "missing.toml")})


def test_default_config_text_is_the_defaults(tmp_path: Path) -> None:
    path = write(tmp_path / "voicecast.toml", DEFAULT_CONFIG_TEXT)
    settings = load_settings(path, environ={})
    assert settings.model_dump() == Settings().model_dump()


def test_default_config_text_documents_every_key() -> None:
    documented = tomllib.loads(DEFAULT_CONFIG_TEXT)
    dumped = Settings().model_dump()
    assert set(documented) == set(dumped)
    for section, value in dumped.items():
        if isinstance(value, dict):
            assert set(documented[section]) == set(value), section
            for key, default in value.items():
                assert documented[section][key] == default, f"{section}.{key}"
        else:
            assert documented[section] == value, section


@pytest.mark.parametrize(
    "template", ["PJSIP/{number}@trunk&Local/666@x", "PJSIP/{number}@trunk,30", "SIP/{number} x"]
)
def test_a_dial_string_that_could_fan_out_is_refused_at_load(tmp_path: Path, template: str) -> None:
    path = write(tmp_path / "voicecast.toml", f'[pbx]\ndial_string = "{template}"\n')
    with pytest.raises(ConfigError, match=r"pbx\.dial_string"):
        load_settings(path, environ={})


def test_pbx_nodes_are_validated_and_their_secrets_make_the_file_sensitive(
    tmp_path: Path,
) -> None:
    text = (
        "[sandbox]\nenabled = false\n"
        "[[pbx.nodes]]\n"
        'name = "pbx-a"\nami_host = "10.0.0.11"\nami_secret = "s3cret"\n'
        'trunks = [{ name = "carrier1", dial_string = "PJSIP/{number}@carrier1", cps = 10.0 }]\n'
        "[[pbx.nodes]]\n"
        'name = "pbx-b"\nami_secret_file = "/etc/voicecast/pbx-b.secret"\nmax_channels = 30\n'
    )
    path = write(tmp_path / "voicecast.toml", text)
    settings = load_settings(path, environ={})
    a, b = settings.pbx.nodes
    assert (a.trunks[0].cps, b.max_channels, b.trunks) == (10.0, 30, [])
    assert settings.file_secrets == ["[[pbx.nodes]] ami_secret"]
    warnings = exposure_warnings(settings, ("ami",))
    assert len(warnings) == 1 and "PBX node pbx-a" in warnings[0]
    for bad in (
        text.replace('name = "pbx-b"', 'name = "pbx-a"'),  # two nodes, one name
        text.replace("pbx-a", "pbx a"),  # not a name
        text.replace("@carrier1", "@carrier1&Local/666@x"),  # a dial string that fans out
        text.replace("cps = 10.0", "cps = 0.0"),
        text.replace("enabled = false", "enabled = true"),  # nodes and the sandbox at once
        text.replace('ami_secret_file = "/etc', 'ami_secret = "x"\nami_secret_file = "/etc'),
    ):
        with pytest.raises(ConfigError, match="pbx"):
            load_settings(write(tmp_path / "voicecast.toml", bad), environ={})
