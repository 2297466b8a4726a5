# Runs inside MicroPython with the working directory at a unix-port board's
# root, after provisioning has put the point map and config.json.tmp there:
# the device checks the new config with its own checker and switches to it,
# as `mpremote exec` has a Pico W do. The summary carries no password.
from ln import keystore


def main():
    try:
        mp_result({"installed": keystore.install_config()})  # noqa: F821
    except (keystore.ConfigError, keystore.KeyStoreError) as e:
        mp_result({"error": str(e)})  # noqa: F821


main()
