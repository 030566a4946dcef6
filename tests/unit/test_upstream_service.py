from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.testing import MemoryReactorClock
from twisted.protocols.tls import TLSMemoryBIOFactory

from n2gateway.upstream.service import endpoint_for_url


def test_ws_url_gives_a_plain_tcp_endpoint() -> None:
    endpoint = endpoint_for_url(MemoryReactorClock(), "ws://127.0.0.1:4000/socket/websocket")
    assert isinstance(endpoint, HostnameEndpoint)
    assert (endpoint._hostText, endpoint._port) == ("127.0.0.1", 4000)


def test_wss_url_wraps_tls_for_that_host() -> None:
    reactor = MemoryReactorClock()
    endpoint = endpoint_for_url(reactor, "wss://pancake.vn/socket/websocket")
    assert not isinstance(endpoint, HostnameEndpoint)
    endpoint.connect(object())
    assert reactor.tcpClients[0][1] == 443
    connecting = reactor.tcpClients[0][2]._wrappedFactory  # inside HostnameEndpoint's wrapper
    assert isinstance(connecting, TLSMemoryBIOFactory)
