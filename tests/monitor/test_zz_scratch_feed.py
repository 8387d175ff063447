import datetime as dt, json
from tests import factories as f
from tests.conftest import FIXED_NOW
from tests.monitor.service_support import Api

def d(days): return FIXED_NOW - dt.timedelta(days=days)

def test_x(api: Api, worker, services):
    batch = [
        f.enrollment(d(10), patient="PT-1", unit="U-A"),
        f.assessment(d(3), patient="PT-1", sensory=2),
        f.enrollment(d(10), patient="PT-2", unit="U-B"),
        f.assessment(d(3), patient="PT-2", sensory=3),
        f.enrollment(d(10), patient="PT-3"),
        f.assessment(d(3), patient="PT-3", motor=3),
    ]
    assert api.post_events({"events": batch}).status_code == 202
    assert worker.wait_idle()
    assert api.post_events(f.assessment(d(6), patient="PT-1", sensory=2)).status_code == 202
    assert worker.wait_idle()
    r = api.get("/v1/alerts", limit="500")
    print(json.dumps(r.json(), indent=1)[:3000])
    for a in r.json()["alerts"]:
        print(a["id"], a["kind"], a["severity"], a["action"], a["audience"], a["unit"], a["patient_id"])
    print(json.dumps(api.decisions("PT-1"), indent=1)[:1500])
    print(json.dumps(api.get("/v1/patients/PT-1/history").json(), indent=1))
