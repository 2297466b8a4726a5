# The light node's own code: CBOR, COSE_Sign1, SHA-512, Ed25519, transactions.
# The release of firmware and SDK, one number for both (setup.cfg reads it).
VERSION = "0.1.0"
