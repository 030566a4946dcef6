from twisted.application.service import ServiceMaker

from n2gateway.http.reuseport import ReusePortParser

n2gateway = ServiceMaker(
    "n2gateway", "n2gateway.tap",
    "Realtime gateway: Pancake/TPOS upstreams and PostgreSQL changes to WebSocket clients",
    "n2gateway")

reuseport = ReusePortParser()
