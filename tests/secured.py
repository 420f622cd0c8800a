"""A secured single broker of the tests' own: a throwaway CA and certificates made with
openssl, SCRAM users created at format time, the ACL authorizer, all started by the
project's script (`STEPSTREAM_KAFKA_TLS_DIR=... services.sh up kafka`)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.protocol.admin import CreateAclsRequest

from stepstream.streams.acls import Acl
from tests.cluster import SCRIPT, script_env

PORT = 27292  # SASL_SSL; mutual TLS on PORT + 1
PASSWORDS = {"admin": "admin-secret", "worker": "worker-secret", "producer": "producer-secret"}
RESOURCE_TYPES = {"topic": 2, "group": 3, "cluster": 4}
PATTERN_TYPES = {"literal": 3, "prefixed": 4}
OPERATIONS = {"Read": 3, "Write": 4, "Create": 5, "Describe": 8, "DescribeConfigs": 10}
ALLOW = 3


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_authority(directory: Path, name: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-out", f"{name}.key", cwd=directory)  # fmt: skip
    openssl("req", "-x509", "-new", "-key", f"{name}.key", "-subj", f"/CN={name}",
            "-days", "2", "-out", f"{name}.pem", cwd=directory)  # fmt: skip


def make_certificate(directory: Path, authority: str, name: str) -> Path:
    """`name`.pem: the certificate (CN=name, for 127.0.0.1) followed by its key."""
    extensions = directory / f"{name}.ext"
    extensions.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-out", f"{name}.key", cwd=directory)  # fmt: skip
    openssl("req", "-new", "-key", f"{name}.key", "-subj", f"/CN={name}",
            "-out", f"{name}.csr", cwd=directory)  # fmt: skip
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{authority}.pem",
            "-CAkey", f"{authority}.key", "-CAcreateserial", "-days", "2",
            "-extfile", extensions.name, "-out", f"{name}.crt", cwd=directory)  # fmt: skip
    bundle = directory / f"{name}.pem"
    bundle.write_text(
        (directory / f"{name}.crt").read_text() + (directory / f"{name}.key").read_text()
    )
    return bundle


class SecuredKafka:
    def __init__(self, state: Path) -> None:
        self.state = state
        self.tls = state / "tls"
        self.env = script_env(
            state,
            PORT,
            STEPSTREAM_KAFKA_TLS_DIR=str(self.tls),
            STEPSTREAM_KAFKA_SCRAM_USERS=" ".join(f"{u}={p}" for u, p in PASSWORDS.items()),
        )
        self.sasl_bootstrap = f"127.0.0.1:{PORT}"
        self.mtls_bootstrap = f"127.0.0.1:{PORT + 1}"

    def make_certificates(self) -> None:
        make_authority(self.tls, "ca")
        for name in ("broker", "worker", "producer"):
            make_certificate(self.tls, "ca", name)
        make_authority(self.state / "stranger", "stranger")  # a CA the broker never used

    def script(self, action: str) -> None:
        done = subprocess.run(
            ["bash", str(SCRIPT), action, "kafka"], env=self.env, capture_output=True, text=True,
            check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"services.sh {action} (secured) failed:\n{done.stderr}")

    def sasl(self, user: str, password: str | None = None) -> dict[str, str]:
        """The settings of a client signing in as `user` with SCRAM over TLS."""
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.sasl_bootstrap,
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "KAFKA_SASL_USERNAME": user,
            "KAFKA_SASL_PASSWORD": PASSWORDS[user] if password is None else password,
            "KAFKA_SSL_CA_FILE": str(self.tls / "ca.pem"),
        }

    def mtls(self, name: str) -> dict[str, str]:
        """The settings of a client known by its certificate (principal User:CN=name)."""
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.mtls_bootstrap,
            "KAFKA_SECURITY_PROTOCOL": "SSL",
            "KAFKA_SSL_CA_FILE": str(self.tls / "ca.pem"),
            "KAFKA_SSL_CERT_FILE": str(self.tls / f"{name}.pem"),
            "KAFKA_SSL_KEY_FILE": str(self.tls / f"{name}.pem"),
        }

    async def grant(self, principal: str, acls: list[Acl]) -> None:
        """Create the ACLs as the super user `admin`."""
        from stepstream.streams.kafka_access import KafkaAccess

        access = KafkaAccess(
            self.sasl_bootstrap, "SASL_SSL", "SCRAM-SHA-512", "admin", PASSWORDS["admin"],
            str(self.tls / "ca.pem"),
        )  # fmt: skip
        admin = AIOKafkaAdminClient(**access.client_options())
        await admin.start()
        try:
            for acl in acls:
                request = CreateAclsRequest(
                    RESOURCE_TYPES[acl.resource], acl.name, PATTERN_TYPES[acl.pattern],
                    principal, "*", OPERATIONS[acl.operation], ALLOW,
                )  # fmt: skip
                response = await admin._send_request(request)
                [(code, message)] = response.creation_responses
                assert code == 0, f"ACL {acl} for {principal}: {code} {message}"
        finally:
            await admin.close()

    def down(self) -> None:
        self.script("down")
        shutil.rmtree(self.state, ignore_errors=True)


def start_secured(state: Path) -> SecuredKafka:
    shutil.rmtree(state, ignore_errors=True)
    kafka = SecuredKafka(state)
    kafka.make_certificates()
    kafka.script("up")
    return kafka
