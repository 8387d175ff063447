import httpx
from tests.monitor.test_api_feed import *  # noqa
def test_probe(live):
    with httpx.Client(base_url=live.base, timeout=5) as c, c.stream("GET", "/v1/alerts/stream", headers=live.headers("nurse", **{"Last-Event-ID": "9"*19})) as r:
        print("STATUS", r.status_code)
        try:
            for line in r.iter_lines():
                print("LINE", repr(line))
        except Exception as e:
            print("EXC", type(e).__name__, e)
