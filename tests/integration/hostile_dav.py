"""A hostile WebDAV server over HTTPS for the transfer tests, on 127.0.0.1:PORT.

MODE `deep`: every PROPFIND is answered with XML nested thousands of levels deep.
MODE `stall`: listings are honest (one file, `a.bin`), but a GET sends its headers and
then nothing, for ever.

Usage: hostile_dav.py PORT CERT KEY MODE
"""

import http.server
import ssl
import sys
import time

PORT, CERT, KEY, MODE = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]

LISTING = """<?xml version="1.0"?><D:multistatus xmlns:D="DAV:">
<D:response><D:href>/dav/out/</D:href><D:propstat><D:prop><D:resourcetype><D:collection/></D:resourcetype>
</D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>
<D:response><D:href>/dav/out/a.bin</D:href><D:propstat><D:prop><D:resourcetype/>
<D:getcontentlength>1000</D:getcontentlength><D:getlastmodified>Mon, 01 Jan 2024 00:00:00 GMT</D:getlastmodified>
</D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response></D:multistatus>"""


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, body: bytes, kind="application/xml"):
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_OPTIONS(self):
        self.answer(200, b"")

    def do_PROPFIND(self):
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if MODE == "deep":
            self.answer(207, ("<a>" * 20000 + "</a>" * 20000).encode())
        elif self.path.endswith("/a.bin"):
            # The file alone, as a depth-0 answer about it.
            head, _, rest = LISTING.partition("<D:response>")
            file_only = head + "<D:response>" + rest.split("<D:response>", 1)[1]
            self.answer(207, file_only.encode())
        else:
            self.answer(207, LISTING.encode())

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        self.wfile.flush()
        time.sleep(3600)


server = http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(CERT, KEY)
server.socket = context.wrap_socket(server.socket, server_side=True)
print("listening", flush=True)
server.serve_forever()
