"""Credential errors of dataclient (exit code 3), each naming the file at fault."""

from __future__ import annotations

from appliance.errors import ApplianceError
from appliance.exitcodes import Exit


class CredentialError(ApplianceError):
    exit_code = Exit.PERMISSION


class WrongPassphrase(CredentialError):
    def __init__(self, key_path: str):
        self.key_path = key_path
        super().__init__(f"{key_path}: wrong passphrase for the private key")


class PassphraseNeeded(CredentialError):
    def __init__(self, key_path: str):
        self.key_path = key_path
        super().__init__(f"{key_path} is encrypted: run in a terminal to be asked for the "
                         "passphrase, or pass --passphrase-file FILE")


class ProxyExpired(CredentialError):
    def __init__(self, path: str, when: str):
        self.path = path
        super().__init__(f"X.509 proxy {path} expired at {when} and no user key is available to "
                         "renew it: run 'dataclient proxy-init' (needs ~/.globus/usercert.pem and "
                         "userkey.pem) or get a new token")


class NoCredentials(CredentialError):
    def __init__(self, looked: str):
        super().__init__(f"no credentials found ({looked}); run 'dataclient login'")
