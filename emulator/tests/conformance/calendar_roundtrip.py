"""Google's own Python client (google-api-python-client), built from Google's discovery
document, drives the emulator: list, insert, patch, delete. Run by
tests/conformance/stock_client.rs when the library is installed (scripts/test.sh installs it
with pip)."""
import json
import sys
import urllib.parse
import urllib.request

from google.oauth2.credentials import Credentials
from googleapiclient.discovery import build_from_document

base_url, discovery_path, refresh_token, client_id, client_secret = sys.argv[1:6]

form = urllib.parse.urlencode({
    "grant_type": "refresh_token", "refresh_token": refresh_token,
    "client_id": client_id, "client_secret": client_secret,
}).encode()
token = json.load(urllib.request.urlopen(base_url + "/token", data=form))["access_token"]

with open(discovery_path) as f:
    discovery = json.load(f)
discovery["rootUrl"] = base_url + "/"
discovery["baseUrl"] = base_url + "/calendar/v3/"
service = build_from_document(discovery, credentials=Credentials(token))
events = service.events()

before = events.list(calendarId="primary").execute()
assert before["kind"] == "calendar#events", before

created = events.insert(calendarId="primary", body={
    "summary": "Stock client", "start": {"dateTime": "2030-01-02T10:00:00Z"},
    "end": {"dateTime": "2030-01-02T11:00:00Z"},
}).execute()
assert created["summary"] == "Stock client", created

patched = events.patch(calendarId="primary", eventId=created["id"], body={"summary": "Patched"}).execute()
assert patched["summary"] == "Patched" and patched["etag"] != created["etag"], patched

listed = events.list(calendarId="primary").execute()
assert any(e["id"] == created["id"] for e in listed["items"]), listed

events.delete(calendarId="primary", eventId=created["id"]).execute()
gone = events.get(calendarId="primary", eventId=created["id"]).execute()
assert gone["status"] == "cancelled", gone
print("stock client: list, insert, patch, delete ok")
