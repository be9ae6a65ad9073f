"""A small client of the Manager for the tests: the console's login (cookies, the login
form's CSRF value, the one-time code step) over Python's http.client, and the admin API
over curl, as an automation script would call it."""

import http.client
import json
import re
import ssl
import subprocess
import urllib.parse


def tls_context():
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def api(server, method, path, token=None, body=None, host="127.0.0.1", raw=False):
    """curl's answer to an admin API call: (status, JSON body or text)."""
    url_host = f"[{host}]" if ":" in host else host
    cmd = ["curl", "-sk", "-o", "-", "-w", "\n%{http_code}", "-X", method,
           f"https://{url_host}:{server.manager_port}{path}"]
    if token:
        cmd += ["-H", f"Authorization: Bearer {token}"]
    if body is not None:
        cmd += ["-H", "Content-Type: application/json", "--data-binary", json.dumps(body)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    text, _, status = run.stdout.rpartition("\n")
    if raw or not text.strip():
        return int(status), text
    try:
        return int(status), json.loads(text)
    except json.JSONDecodeError:
        return int(status), text


class Browser:
    """Cookies and forms, the way a browser sends them (same-origin, SameSite=Strict)."""

    def __init__(self, server, host="127.0.0.1"):
        self.server = server
        self.host = host
        self.cookies = {}
        self.csrf = None

    def request(self, method, path, form=None, headers=None):
        conn = http.client.HTTPSConnection(self.host, self.server.manager_port, timeout=15,
                                           context=tls_context())
        sent = dict(headers or {})
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if form is not None:
            body = urllib.parse.urlencode(form)
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        conn.request(method, path, body=body, headers=sent)
        response = conn.getresponse()
        text = response.read().decode("utf-8", "replace")
        set_cookies = response.headers.get_all("Set-Cookie") or []
        for line in set_cookies:
            name, _, rest = line.partition("=")
            value = rest.split(";", 1)[0]
            if value:
                self.cookies[name] = value
            else:
                self.cookies.pop(name, None)
        conn.close()
        found = re.search(r'name="csrf-token" content="([0-9a-f]+)"', text)
        if found:
            self.csrf = found.group(1)
        return response.status, response.headers, text, set_cookies

    def login(self, name, password, code=None):
        status, _, page, _ = self.request("GET", "/login")
        assert status == 200, page
        field = re.search(r'name="csrf" value="([0-9a-f]+)"', page).group(1)
        status, headers, page, _ = self.request(
            "POST", "/login", form={"csrf": field, "name": name, "password": password})
        if code is not None:
            assert status == 200 and 'action="/login/code"' in page, (status, page)
            status, headers, page, _ = self.request(
                "POST", "/login/code", form={"csrf": field, "code": code() if callable(code) else code})
        return status, headers, page
