"""DICOM TLS (DICOM PS3.15 B.9, "BCP 195") for the listener and the C-STORE sink.

`TlsConfig` names the PEM files; `server_context` makes the listener's `ssl.SSLContext`
(its certificate; with a CA, client certificates are required and verified against it) and
`client_context` the sink's (the server is verified against the CA, else the system
store, and its host name checked; an optional client certificate for PACSs that ask).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from triage.errors import ConfigError


@dataclass(frozen=True)
class TlsConfig:
    """PEM files for one side of a TLS association.

    Attributes:
        cert: our certificate (chain); required by a server, optional for a client.
        key: its private key; given exactly when `cert` is.
        ca: certificates the peer's must chain to (server: required client certificates;
            client: instead of the system store).
    """

    cert: Path | None = None
    key: Path | None = None
    ca: Path | None = None

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise ConfigError("TLS needs both a certificate and its key (--tls-cert and "
                              "--tls-key, or tls-cert= and tls-key=), or neither.")
        for what, path in (("certificate", self.cert), ("key", self.key),
                           ("CA file", self.ca)):
            if path is not None and not Path(path).is_file():
                raise ConfigError(f"TLS {what} {path} does not exist or is not a file.")

    def server_context(self) -> ssl.SSLContext:
        """The listener's context.

        Raises:
            ConfigError: no certificate, or PEM files that do not load.
        """
        if self.cert is None or self.key is None:
            raise ConfigError("A TLS listener needs --tls-cert and --tls-key.")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        self._load(context)
        if self.ca is not None:
            context.verify_mode = ssl.CERT_REQUIRED
        return context

    def client_context(self) -> ssl.SSLContext:
        """The sink's context (server verified, host name checked)."""
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        self._load(context)
        return context

    def _load(self, context: ssl.SSLContext) -> None:
        try:
            if self.cert is not None:
                context.load_cert_chain(str(self.cert), str(self.key))
            if self.ca is not None:
                context.load_verify_locations(cafile=str(self.ca))
        except (ssl.SSLError, OSError) as err:
            raise ConfigError(f"The TLS files (certificate {self.cert}, key {self.key}, CA "
                              f"{self.ca}) do not load: {err}. Give PEM files, the key "
                              f"unencrypted.") from err
