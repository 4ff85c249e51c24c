"""Each doctor check reports the right finding on crafted machines (no root, no real hardware)."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner

from v2gtool.cli import doctor as doctor_cli
from v2gtool.cli.main import cli
from v2gtool.doctor.checks import (
    CHECK_NAMES,
    CHECKS,
    Settings,
    check_certificates,
    check_clock,
    check_openssl,
    check_plc_driver,
    check_plc_interface,
    check_raw_socket,
    check_realtime,
    run_checks,
)
from v2gtool.doctor.environment import ClockState, CommandResult, Environment, TlsLibrary
from v2gtool.doctor.findings import Finding, Status
from v2gtool.exit_codes import ExitCode

GOOD_TLS = TlsLibrary(
    version="OpenSSL 3.0.13 30 Jan 2024",
    version_info=(3, 0, 0, 13, 0),
    tls13=True,
    tls13_suites=frozenset({"TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256", "TLS_AES_128_GCM_SHA256"}),
    groups=frozenset({"secp521r1", "prime256v1"}),
    ed448=True,
)


def no_command(argv: Sequence[str]) -> CommandResult | None:
    return None


class Machine:
    """A crafted machine: files below a temporary root, and answers for what is not a file."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.commands: dict[str, CommandResult] = {}
        self.env = Environment(root=root, run=self.run, euid=lambda: 1000, adjtimex=lambda: None,
                               sched_fifo=lambda: None, cpus=lambda: 4, tls=lambda: GOOD_TLS)
        self.settings = Settings(plc_interface="eth1", certs_dir=Path("/etc/v2g/certs"),
                                 trust_dir=Path("/etc/v2g/trust/certs"), secc_tcp_port=49152)

    def run(self, argv: Sequence[str]) -> CommandResult | None:
        return self.commands.get(argv[0])

    def file(self, path: str, text: str = "", mode: int = 0o644) -> Path:
        target = self.root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        target.chmod(mode)
        return target

    def interface(self, name: str, flags: int = 0x1003, operstate: str = "up", link_local: bool = True) -> None:
        self.file(f"/sys/class/net/{name}/flags", f"{flags:#x}\n")
        self.file(f"/sys/class/net/{name}/operstate", operstate + "\n")
        if link_local:
            self.file("/proc/net/if_inet6", f"fe80000000000000021122fffe334455 03 40 20 80 {name:>8}\n")

    def with_(self, **changes: object) -> Environment:
        return dataclasses.replace(self.env, **changes)  # type: ignore[arg-type]


@pytest.fixture
def machine(tmp_path: Path) -> Machine:
    return Machine(tmp_path)


# --- plc-driver ------------------------------------------------------------------------------

def test_qcaspi_loaded_with_valid_options(machine: Machine) -> None:
    machine.file("/proc/modules", "qcaspi 40960 0 - Live 0x0000000000000000\nqca_7k_common 16384 1 qcaspi, Live 0x0\n")
    machine.file("/etc/modprobe.d/qca.conf", "options qcaspi qcaspi_clkspeed=12000000 qcaspi_pluggable=1 # SPI\n")
    finding = check_plc_driver(machine.env, machine.settings)
    assert finding.status is Status.OK
    assert "qcaspi" in finding.summary
    assert "modprobe option qcaspi_clkspeed=12000000" in finding.details


def test_driver_seen_in_sysfs_without_proc_modules(machine: Machine) -> None:
    (machine.root / "sys/module/qca_uart").mkdir(parents=True)
    finding = check_plc_driver(machine.env, machine.settings)
    assert (finding.status, finding.summary) == (Status.OK, "qca_uart loaded")


def test_module_state_unreadable_is_a_warning(machine: Machine) -> None:
    finding = check_plc_driver(machine.env, machine.settings)
    assert finding.status is Status.WARN
    assert "cannot read" in finding.summary


def test_no_qca7000_driver_is_a_warning(machine: Machine) -> None:
    machine.file("/proc/modules", "e1000e 286720 0 - Live 0x0\n")
    finding = check_plc_driver(machine.env, machine.settings)
    assert finding.status is Status.WARN
    assert finding.fix is not None and "modprobe qcaspi" in finding.fix


@pytest.mark.parametrize("option", ["qcaspi_clkspeed=20000000", "qcaspi_burst_len=0", "wr_verify=4",
                                    "qcaspi_pluggable=yes", "qcaspi_speed=1"])
def test_qcaspi_option_out_of_range_fails(machine: Machine, option: str) -> None:
    machine.file("/proc/modules", "qcaspi 40960 0 - Live 0x0\n")
    machine.file("/etc/modprobe.d/qca.conf", f"options qcaspi {option}\n")
    finding = check_plc_driver(machine.env, machine.settings)
    assert finding.status is Status.FAIL
    assert option.split("=")[0] in finding.summary


# --- plc-interface ---------------------------------------------------------------------------

def test_interface_up_with_link_local(machine: Machine) -> None:
    machine.interface("eth1")
    assert check_plc_interface(machine.env, machine.settings).status is Status.OK


def test_missing_interface_lists_those_present(machine: Machine) -> None:
    machine.interface("eth0")
    finding = check_plc_interface(machine.env, machine.settings)
    assert finding.status is Status.FAIL
    assert "eth1 does not exist" in finding.summary
    assert finding.fix is not None and "eth0" in finding.fix


def test_interface_down(machine: Machine) -> None:
    machine.interface("eth1", flags=0x1002, operstate="down")
    finding = check_plc_interface(machine.env, machine.settings)
    assert finding.status is Status.FAIL
    assert finding.fix == "ip link set eth1 up"


def test_interface_without_carrier(machine: Machine) -> None:
    machine.interface("eth1", operstate="lowerlayerdown")
    finding = check_plc_interface(machine.env, machine.settings)
    assert finding.status is Status.FAIL
    assert "lowerlayerdown" in finding.summary


def test_interface_without_ipv6_link_local(machine: Machine) -> None:
    machine.interface("eth1", link_local=False)
    finding = check_plc_interface(machine.env, machine.settings)
    assert finding.status is Status.FAIL
    assert finding.fix is not None and "net.ipv6.conf.eth1.disable_ipv6=0" in finding.fix


# --- raw-socket ------------------------------------------------------------------------------

def test_root_may_open_raw_sockets(machine: Machine) -> None:
    assert check_raw_socket(machine.with_(euid=lambda: 0), machine.settings).status is Status.OK


@pytest.mark.parametrize(("capeff", "status"), [("0000000000003000", Status.OK),   # NET_RAW | NET_ADMIN
                                                ("0000000000001000", Status.FAIL),  # NET_ADMIN only
                                                ("0000000000000000", Status.FAIL)])
def test_capability_net_raw(machine: Machine, capeff: str, status: Status) -> None:
    machine.file("/proc/self/status", f"Name:\tpython3\nCapInh:\t0000000000000000\nCapEff:\t{capeff}\n")
    assert check_raw_socket(machine.env, machine.settings).status is status


# --- clock -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("answer", "status"), [("yes\n", Status.OK), ("no\n", Status.FAIL)])
def test_clock_from_timedatectl(machine: Machine, answer: str, status: Status) -> None:
    machine.commands["timedatectl"] = CommandResult(0, answer)
    finding = check_clock(machine.env, machine.settings)
    assert finding.status is status
    if status is Status.FAIL:
        assert finding.fix is not None and "expired" in finding.fix


@pytest.mark.parametrize(("state", "status"), [(ClockState(0, 0x2001), Status.OK),
                                               (ClockState(5, 0x0041), Status.FAIL),
                                               (ClockState(0, 0x0040), Status.FAIL),
                                               (None, Status.WARN)])
def test_clock_from_adjtimex_without_systemd(machine: Machine, state: ClockState | None, status: Status) -> None:
    machine.commands["timedatectl"] = CommandResult(1, "", "System has not been booted with systemd")
    assert check_clock(machine.with_(adjtimex=lambda: state), machine.settings).status is status


# --- certificates ----------------------------------------------------------------------------

def _pki(machine: Machine, key_mode: int = 0o600) -> Path:
    machine.file("/etc/v2g/certs/secc_leaf.pem", "-----BEGIN CERTIFICATE-----\n")
    key = machine.file("/etc/v2g/certs/secc_leaf.key", "-----BEGIN PRIVATE KEY-----\n", key_mode)
    machine.file("/etc/v2g/trust/certs/v2g_root.pem", "-----BEGIN CERTIFICATE-----\n")
    return key


def test_safe_pki(machine: Machine) -> None:
    _pki(machine)
    finding = check_certificates(machine.env, machine.settings)
    assert finding.status is Status.OK
    assert "1 private key" in finding.summary


@pytest.mark.parametrize("mode", [0o640, 0o644, 0o700])
def test_readable_private_key_fails(machine: Machine, mode: int) -> None:
    _pki(machine, key_mode=mode)
    finding = check_certificates(machine.env, machine.settings)
    assert finding.status is Status.FAIL
    assert finding.fix is not None and "chmod 0600 /etc/v2g/certs/secc_leaf.key" in finding.fix


def test_private_key_recognised_by_content(machine: Machine) -> None:
    _pki(machine)
    machine.file("/etc/v2g/certs/oem.pem", "-----BEGIN EC PRIVATE KEY-----\n", 0o644)
    finding = check_certificates(machine.env, machine.settings)
    assert finding.status is Status.FAIL
    assert "/etc/v2g/certs/oem.pem" in finding.summary + (finding.fix or "")


def test_world_writable_directory_fails(machine: Machine) -> None:
    _pki(machine)
    (machine.root / "etc/v2g/trust/certs").chmod(0o777)
    finding = check_certificates(machine.env, machine.settings)
    assert finding.status is Status.FAIL
    assert finding.fix is not None and "chmod o-w /etc/v2g/trust/certs" in finding.fix


def test_missing_directories(machine: Machine) -> None:
    machine.file("/etc/v2g/certs/secc_leaf.pem")
    finding = check_certificates(machine.env, machine.settings)
    assert finding.status is Status.FAIL
    assert finding.summary == "missing: /etc/v2g/trust/certs"


def test_relative_directories_are_from_the_working_directory(machine: Machine,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """``--certs-dir c/certs`` is the machine's ``$PWD/c/certs`` (below a crafted root as well)."""
    _pki(machine)
    cwd = machine.root / "etc/v2g"
    monkeypatch.chdir(cwd)
    settings = dataclasses.replace(machine.settings, certs_dir=Path("certs"), trust_dir=Path("trust/../trust/certs"))
    assert check_certificates(Environment(), settings).status is Status.OK  # on this machine
    assert machine.env.path("certs") == machine.root / str(cwd).lstrip("/") / "certs"


def test_empty_trust_store_warns(machine: Machine) -> None:
    _pki(machine)
    (machine.root / "etc/v2g/trust/certs/v2g_root.pem").unlink()
    assert check_certificates(machine.env, machine.settings).status is Status.WARN


# --- realtime --------------------------------------------------------------------------------

def test_sched_fifo_refused(machine: Machine) -> None:
    finding = check_realtime(machine.with_(sched_fifo=lambda: "Operation not permitted"), machine.settings)
    assert finding.status is Status.FAIL
    assert finding.fix is not None and "LimitRTPRIO" in finding.fix


def test_single_cpu_warns(machine: Machine) -> None:
    assert check_realtime(machine.with_(cpus=lambda: 1), machine.settings).status is Status.WARN


def test_sched_fifo_available(machine: Machine) -> None:
    assert check_realtime(machine.env, machine.settings).status is Status.OK


def test_real_probe_leaves_our_scheduling_alone() -> None:
    from v2gtool.doctor.environment import probe_sched_fifo

    before = os.sched_getscheduler(0)
    result = probe_sched_fifo()
    assert result is None or isinstance(result, str)
    assert os.sched_getscheduler(0) == before


# --- openssl ---------------------------------------------------------------------------------

def test_openssl_with_iso20_suites(machine: Machine) -> None:
    assert check_openssl(machine.env, machine.settings).status is Status.OK


@pytest.mark.parametrize(("change", "status", "text"), [
    ({"version_info": (1, 1, 0, 12, 15), "tls13": False}, Status.FAIL, "no TLS 1.3"),
    ({"tls13_suites": frozenset({"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384"})}, Status.FAIL,
     "TLS_CHACHA20_POLY1305_SHA256"),
    ({"groups": frozenset({"prime256v1"})}, Status.FAIL, "secp521r1"),
    ({"ed448": False}, Status.WARN, "Ed448"),
])
def test_openssl_shortcomings(machine: Machine, change: dict[str, object], status: Status, text: str) -> None:
    tls = dataclasses.replace(GOOD_TLS, **change)  # type: ignore[arg-type]
    finding = check_openssl(machine.with_(tls=lambda: tls), machine.settings)
    assert finding.status is status
    assert text in finding.summary


def test_this_pythons_openssl_is_probed() -> None:
    from v2gtool.doctor.environment import probe_tls

    tls = probe_tls()
    assert tls.version.startswith(("OpenSSL", "LibreSSL", "BoringSSL"))
    assert tls.tls13 == bool(tls.tls13_suites)


# --- the command -----------------------------------------------------------------------------

def test_skip_reports_skipped_and_runs_nothing(machine: Machine) -> None:
    def explode(*_: object) -> None:
        raise AssertionError("a skipped check ran")

    env = machine.with_(run=explode, tls=explode, sched_fifo=explode, adjtimex=explode, euid=explode)
    findings = run_checks(env, machine.settings, frozenset(CHECK_NAMES))
    assert [f.check for f in findings] == [c.name for c in CHECKS]
    assert {f.status for f in findings} == {Status.SKIPPED}


def _only(name: str) -> list[str]:
    return [arg for other in CHECK_NAMES if other != name for arg in ("--skip", other)]


def test_cli_json_and_exit_status(tmp_path: Path) -> None:
    certs, trust = tmp_path / "certs", tmp_path / "trust"
    certs.mkdir()
    trust.mkdir()
    (trust / "root.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    key = certs / "leaf.key"
    key.write_text("-----BEGIN PRIVATE KEY-----\n")
    key.chmod(0o600)
    args = ["doctor", "--json", "--certs-dir", str(certs), "--trust-dir", str(trust), *_only("certificates")]
    ok = CliRunner().invoke(cli, args)
    records = [json.loads(line) for line in ok.output.splitlines()]
    assert ok.exit_code == ExitCode.OK
    assert [r["status"] for r in records if r["check"] == "certificates"] == ["ok"]
    assert len(records) == len(CHECK_NAMES)

    key.chmod(0o644)
    bad = CliRunner().invoke(cli, args)
    assert bad.exit_code == ExitCode.ENVIRONMENT
    record = next(json.loads(line) for line in bad.output.splitlines() if '"certificates"' in line)
    assert record["status"] == "fail" and f"chmod 0600 {key}" in record["fix"]


def test_cli_relative_dirs_from_options_and_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "c/certs").mkdir(parents=True)
    (tmp_path / "c/trust").mkdir()
    (tmp_path / "c/trust/root.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    (tmp_path / "rel.toml").write_text('[pki]\ncerts_dir = "c/certs"\ntrust_dir = "c/trust"\n')
    monkeypatch.chdir(tmp_path)
    for args in (["doctor", "--certs-dir", "c/certs", "--trust-dir", "c/trust"], ["--config", "rel.toml", "doctor"]):
        result = CliRunner().invoke(cli, [*args, "--json", *_only("certificates")])
        assert result.exit_code == ExitCode.OK, result.output
        assert '"status":"ok"' in next(line for line in result.output.splitlines() if '"certificates"' in line)


@pytest.mark.parametrize("name", ["..", "eth0\nx", "a/b", "x" * 16])
def test_cli_refuses_a_bad_interface_name(name: str) -> None:
    result = CliRunner().invoke(cli, ["doctor", "--interface", name])
    assert result.exit_code == ExitCode.USAGE
    assert "Invalid value for '--interface'" in result.output and "must be an interface name" in result.output


def test_cli_rejects_an_unknown_check() -> None:
    result = CliRunner().invoke(cli, ["doctor", "--skip", "coffee"])
    assert result.exit_code == ExitCode.USAGE
    assert "coffee" in result.output


def test_people_see_the_fix_text_as_written() -> None:
    """The table shows text, not rich markup: "set [slac] iface" keeps its brackets."""
    result = CliRunner().invoke(cli, ["doctor", "--interface", "nosuch0", *_only("plc-interface")],
                                terminal_width=200)
    assert result.exit_code == ExitCode.ENVIRONMENT
    assert "set [slac] iface" in result.output


@pytest.mark.parametrize(("args", "checked"), [([], 50002), (["--tcp-port", "50003"], 50003)])
def test_cli_checks_the_configured_secc_port_unless_given_one(monkeypatch: pytest.MonkeyPatch, args: list[str],
                                                              checked: int) -> None:
    seen: list[Settings] = []

    def run_checks(env: Environment, settings: Settings, skip: frozenset[str]) -> list[Finding]:
        seen.append(settings)
        return []

    monkeypatch.setattr(doctor_cli, "run_checks", run_checks)
    result = CliRunner().invoke(cli, ["doctor", *args], env={"V2GTOOL_SDP__TCP_PORT": "50002"})
    assert result.exit_code == ExitCode.OK, result.output
    assert [s.secc_tcp_port for s in seen] == [checked]


def test_cli_refuses_a_port_the_secc_cannot_announce() -> None:
    """SDP announces a Dynamic Port only (49152-65535), as serve and deploy-files take."""
    result = CliRunner().invoke(cli, ["doctor", "--tcp-port", "8080"])
    assert result.exit_code == ExitCode.USAGE
    assert "Invalid value for '--tcp-port': 8080 is not in the range 49152<=x<=65535." in result.output
