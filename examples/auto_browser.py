#!/usr/bin/env python3
"""Stands in for the user's browser in the non-interactive demo.

The library opens "the browser" with the sign-in URL (through $BROWSER on
Linux). The local test identity service runs with auto-consent, so the sign-in
page answers at once with a redirect to the library's loopback listener; this
script follows it like a browser would, and prints what the user would see.
"""
import re
import sys
import urllib.request

url = sys.argv[-1]
with urllib.request.urlopen(url, timeout=30) as page:  # follows the 302 to http://localhost:<port>/
    text = page.read().decode("utf-8", "replace")
title = re.search(r"<title>(.*?)</title>", text, re.S)
print(f"  [browser] {title.group(1).strip() if title else 'page loaded'}", file=sys.stderr)
