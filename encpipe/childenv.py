"""The secrets of the environment, and which child inherits which (child_env):
encpipe's own, libpq's, rclone's, the clouds' and the secret stores'. It imports
nothing: a module that only starts children (psql, rclone) need not load keys.py."""

ENV_KEY = "ENCPIPE_KEY"
ENV_PASSPHRASE = "ENCPIPE_PASSPHRASE"
ENV_SIGNER = "ENCPIPE_SIGNER"  # no secret: the verify keys a file must be signed by
# Secrets no child inherits unless it needs them, by need (child_env's `needs`):
# "encpipe": encpipe's own (the last is the previous tool's key); "libpq": pg_dump's,
# psql's...; "rclone": every RCLONE_ variable (its configuration password, remotes'
# credentials); "cloud": the cloud providers' credentials, which rclone's env_auth
# reads, and a key command may (aws kms, gcloud secrets, az keyvault); "store": the
# tokens of the secret stores a key command reads the key from (vault, op, bw,
# sops, doppler), which no other tool needs.
# scripts/encpipe-sh-setup unsets them by name and prefix (AWS_, GOOGLE_, AZURE_,
# OS_, OP_SESSION; ST_KEY by name) with no Python: tests/test_child_env.py checks it knows every name here.
LEGACY_KEY = "BACKUP_ENCRYPTION_KEY"  # the previous tool's: read by open --legacy and inspect --legacy alone
SECRET_VARIABLES = (ENV_KEY, ENV_PASSPHRASE, LEGACY_KEY)
# encpipe's, though no secret: no other child needs it (a signing key put there by
# mistake reached psql, pg_dump and zstd); kept by a child that reads no key
ENCPIPE_ONLY = (ENV_SIGNER,)
LIBPQ_VARIABLES = ("PGPASSWORD",)
RCLONE_PREFIX = "RCLONE_"
CLOUD_VARIABLES = (
    # AWS_SECRET_KEY: the AWS SDK's other name for AWS_SECRET_ACCESS_KEY (rclone's env_auth takes it)
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SECRET_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN", "AWS_WEB_IDENTITY_TOKEN_FILE",
    "GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_OAUTH_ACCESS_TOKEN",
    "AZURE_STORAGE_KEY", "AZURE_STORAGE_ACCOUNT_KEY", "AZURE_STORAGE_SAS_TOKEN", "AZURE_STORAGE_CONNECTION_STRING",
    "AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PASSWORD", "AZURE_PASSWORD",
    "OS_PASSWORD", "OS_AUTH_TOKEN", "OS_APPLICATION_CREDENTIAL_SECRET",  # OpenStack Swift
    "ST_KEY",  # Swift's v1 API key, which rclone's env_auth reads too (ncw/swift's ApplyEnvironment)
)
STORE_VARIABLES = (
    "VAULT_TOKEN",  # HashiCorp Vault
    "OP_SERVICE_ACCOUNT_TOKEN", "OP_CONNECT_TOKEN",  # 1Password (and OP_SESSION_<account>)
    "BW_SESSION", "BW_CLIENTSECRET",  # Bitwarden
    "SOPS_AGE_KEY",  # SOPS's age identities themselves
    "DOPPLER_TOKEN",
)
STORE_PREFIXES = ("OP_SESSION",)
# What each kind of child needs: a key command (it may fetch the key from a
# cloud's secret store); an encpipe a script runs (it reads the keys of our
# environment, and runs the key commands); rclone. A libpq client needs
# ("libpq",), a compressor nothing.
KEY_COMMAND_NEEDS = ("cloud", "store")
ENCPIPE_NEEDS = ("encpipe", "cloud", "store")
RCLONE_NEEDS = ("rclone", "cloud")


def child_env(env, needs=()):
    """`env` less every secret variable but those of the needs in `needs`:
    "encpipe" (SECRET_VARIABLES, and ENCPIPE_ONLY), "libpq" (PGPASSWORD), "rclone" (every RCLONE_
    variable), "cloud" (CLOUD_VARIABLES), "store" (STORE_VARIABLES, STORE_PREFIXES).
    A compressor needs none."""
    def needed(name):
        if name in SECRET_VARIABLES or name in ENCPIPE_ONLY:
            return "encpipe" in needs
        if name in LIBPQ_VARIABLES:
            return "libpq" in needs
        if name.startswith(RCLONE_PREFIX):
            return "rclone" in needs
        if name in CLOUD_VARIABLES:
            return "cloud" in needs
        if name in STORE_VARIABLES or name.startswith(STORE_PREFIXES):
            return "store" in needs
        return True

    return {k: v for k, v in env.items() if needed(k)}
