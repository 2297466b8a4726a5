"""The device-authentication Bloom filter, one bit layout on every interpreter."""
