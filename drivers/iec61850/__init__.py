"""IEC 61850 MMS client, sans-IO: BER, the ISO stack under MMS, and MMS itself.

Layers, one module each: ``ber`` (bounded TLV reader and writer),
``iso`` (TPKT, COTP class 0, session, presentation, ACSE), ``mms`` (PDUs
and MMS Data), ``client`` (the state machine, and a blocking helper over
``lightnode.drivers.link.TcpLink``). Errors: ``errors``.

    from lightnode.drivers.iec61850 import client
    c = client.MmsClient("192.0.2.10", 102)
    c.associate()
    print(c.read("RELAYMEAS/MMXU1.Hz.mag.f", "MX"))
    c.close()
"""
