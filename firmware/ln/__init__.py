# The light node's own code: CBOR, COSE_Sign1, SHA-512, Ed25519, transactions.
