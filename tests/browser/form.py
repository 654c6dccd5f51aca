"""Drives the web form at / in headless Chromium (Playwright, the Debian
browser) against a live riskserve; run by tests/integration/browser.rs.

    form.py BASE_URL CHROMIUM SCREENSHOT

Talks to the Rust test on stdout/stdin: prints `COMMIT 2` when it wants a
new model version published and waits for a line `SERVING 2` on stdin;
prints `PASS` at the end. Any failed check raises (non-zero exit).
"""

import json
import sys
import tempfile
import urllib.request

from playwright.sync_api import expect, sync_playwright

BASE, CHROMIUM, SCREENSHOT = sys.argv[1:4]
MODEL = "credit-risk"
TIMEOUT_MS = 60_000
FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# What a loan officer types, and the same application in the API's units.
TYPED = {
    "loan_amnt": "12,000",
    "int_rate": "24.35",
    "annual_inc": "$38,000",
    "revol_util": "87.5",
    "dti": "27.4",
    "delinq_2yrs": "2",
}
CHOSEN = {"purpose": "small_business", "grade": "E", "emp_length": "2 years", "home_ownership": "RENT"}
EXPECTED_BODY = {
    "loan_amnt": 12000,
    "int_rate": 0.2435,
    "annual_inc": 38000,
    "revol_util": 0.875,
    "dti": 27.4,
    "delinq_2yrs": 2,
    **CHOSEN,
}
# Each field's visible label, and the order Tab visits them.
LABELS_SHOWN = {
    "loan_amnt": "Loan amount",
    "int_rate": "Interest rate",
    "annual_inc": "Annual income",
    "revol_util": "Revolving utilisation",
    "dti": "Debt-to-income ratio",
    "delinq_2yrs": "Delinquencies in the last 2 years",
    "purpose": "Purpose",
    "grade": "Grade",
    "emp_length": "Employment length",
    "home_ownership": "Home ownership",
}
FIELD_ORDER = ["loan_amnt", "int_rate", "purpose", "grade", "annual_inc", "emp_length", "home_ownership", "revol_util", "dti", "delinq_2yrs"]
# The plain words each feature is named with in the reasons.
LABELS = {
    "loan_amnt": "loan amount",
    "int_rate": "interest rate",
    "annual_inc": "annual income",
    "revol_util": "revolving utilisation",
    "dti": "debt-to-income ratio",
    "delinq_2yrs": "delinquenc",
    "purpose": "purpose",
    "grade": "grade",
    "emp_length": "employment length",
    "home_ownership": "home ownership",
    # A version's own inputs the page does not know: labelled from their names.
    "term": "term",
    "verification_status": "verification status",
}


expect.set_options(timeout=TIMEOUT_MS)


# reasonText(reason, rank 1, body sent) on the page, and what it must say.
WORDING = [
    (
        {"feature": "revol_util", "value": 0.448, "contribution": 0.0123, "imputed": True},
        "revolving utilisation was not given (the model assumed 44.8 %); that raised the risk (+1.2 points)",
    ),
    (
        {"feature": "purpose", "value": None, "contribution": -0.004, "imputed": True},
        "purpose was not given; that lowered the risk (-0.4 points)",
    ),
    (
        {"feature": "home_ownership", "value": "MORTGAGE", "contribution": -0.02, "imputed": False},
        "home ownership mortgage lowered the risk (-2.0 points)",
    ),
    (
        {"feature": "delinq_2yrs", "value": 1, "contribution": 0.0, "imputed": False},
        "1 delinquency in the last 2 years made no difference (+0.0 points)",
    ),
    (
        {"feature": "annual_inc", "value": 152000, "contribution": -0.031, "imputed": False},
        "annual income $152,000 lowered the risk (-3.1 points)",
    ),
]


def say(line):
    print(line, flush=True)


def api(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(BASE + path, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)


def submit(page):
    """Submits by keyboard and returns (request body the page sent, its
    content type)."""
    with page.expect_request(lambda r: r.url.endswith("/predict") and r.method == "POST") as sent:
        page.focus("#score")
        page.keyboard.press("Enter")
    request = sent.value
    return json.loads(request.post_data), request.headers.get("content-type")


def check_prediction(page, body, version):
    """The shown answer is the API's answer for the same body, by `version`."""
    want = api("POST", f"/v1/models/{MODEL}/predict", body)
    assert want["model_version"] == version, want
    p = want["predictions"][0]
    expect(page.locator("#answered")).to_have_attribute("data-version", str(version), timeout=TIMEOUT_MS)
    shown = page.locator("#probability")
    assert float(shown.get_attribute("data-probability")) == p["probability_late"], (shown.get_attribute("data-probability"), p)
    expect(shown).to_have_text(f"{100 * p['probability_late']:.2f} %")
    expect(page.locator("#decision")).to_have_attribute("data-decision", p["decision"])
    if "band" in p:
        expect(page.locator("#decision")).to_have_attribute("data-band", p["band"])
    expect(page.locator("#answered")).to_have_text(f"Answered by model {MODEL} version {version}.")
    status = api("GET", f"/v1/models/{MODEL}")
    threshold = next(v for v in status["versions"] if v["version"] == version)["model"]["decision"]["threshold"]
    expect(page.locator("#cutoff")).to_contain_text(f"at or above {100 * threshold:.2f} % are high risk")
    if "band" in p:
        expect(page.locator("#decision")).to_contain_text(p["band"].capitalize())
    reasons = p.get("reasons")
    assert reasons, f"the API gave no reasons: {p}"
    items = page.locator("#reasons li")
    expect(items).to_have_count(len(reasons))
    for i, reason in enumerate(reasons):
        item = items.nth(i)
        expect(item).to_have_attribute("data-feature", reason["feature"])
        text = item.inner_text()
        assert LABELS[reason["feature"]] in text, (text, reason)
        assert reason["feature"] not in text or reason["feature"] == LABELS[reason["feature"]], (text, reason)
        c = reason["contribution"]
        effect = ("raised the risk most" if i == 0 else "raised the risk") if c > 0 else ("lowered the risk" if c < 0 else "made no difference")
        assert text.endswith(f"{effect} ({100 * c:+.1f} points)"), (text, reason)
        if reason.get("imputed"):
            assert "was not given" in text, (text, reason)
    return p


def main():
    with tempfile.TemporaryDirectory(prefix="riskserve-chromium-") as profile, sync_playwright() as pw:
        browser = pw.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            headless=True,
            args=FLAGS,
            viewport={"width": 1100, "height": 900},
            timeout=TIMEOUT_MS,
        )
        try:
            page = browser.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(BASE + "/")
            # The selects come from the served version's schema.
            expect(page.locator("#model-version-line")).to_contain_text("version 1 serving")
            status = api("GET", f"/v1/models/{MODEL}")
            serving = next(v for v in status["versions"] if v["serving"])
            for field in serving["inputs"]:
                if field["type"] == "category":
                    values = page.locator(f"#{field['name']} option").evaluate_all("os => os.map(o => o.value)")
                    assert values == [""] + field["categories"], (field, values)
            say("schema: selects filled from the served version's inputs")

            # Fill in the form as a person would, finding each field by its
            # label (as a screen reader announces it).
            for name, text in TYPED.items():
                page.get_by_label(LABELS_SHOWN[name], exact=True).fill(text)
            for name, value in CHOSEN.items():
                page.get_by_label(LABELS_SHOWN[name], exact=True).select_option(value)
            # By keyboard: Tab walks the fields in reading order to the button.
            page.focus("#loan_amnt")
            order = []
            for _ in FIELD_ORDER[1:] + ["score"]:
                page.keyboard.press("Tab")
                order.append(page.evaluate("document.activeElement.id"))
            assert order == FIELD_ORDER[1:] + ["score"], order
            page.evaluate("window.sameDocument = true")
            body, content_type = submit(page)
            assert content_type.split(";")[0].strip() == "application/json", content_type
            assert body == EXPECTED_BODY, body
            p = check_prediction(page, body, 1)
            say(f"scored: {p['probability_late']} with {len(p['reasons'])} reasons, version 1")
            page.locator("main").screenshot(path=SCREENSHOT)

            # An invalid value: the server's message next to the field.
            page.fill("#int_rate", "150")
            page.fill("#annual_inc", "plenty")
            submit(page)
            rate_error = page.locator("#int_rate-error")
            expect(rate_error).to_be_visible()
            expect(rate_error).to_have_text("Must be at most 100 %, got 150 %.")
            expect(page.locator("#int_rate")).to_have_attribute("aria-invalid", "true")
            expect(page.locator("#int_rate")).to_have_attribute("aria-describedby", "int_rate-error int_rate-help")
            expect(page.locator("#annual_inc-error")).to_have_text('Must be a number, got the string "plenty".')
            expect(page.locator("#loan_amnt-error")).to_be_hidden()
            assert page.evaluate("document.activeElement.id") == "int_rate", "focus goes to the first invalid field"
            expect(page.locator("#problem")).to_contain_text("Please correct 2 fields")
            say("invalid: the server's messages shown next to int_rate and annual_inc")

            # Corrected, then a new version is committed: the next submission
            # names it, without reloading the page.
            page.fill("#int_rate", TYPED["int_rate"])
            page.fill("#annual_inc", TYPED["annual_inc"])
            say("COMMIT 2")
            line = sys.stdin.readline().strip()
            assert line == "SERVING 2", f"the test answered {line!r}"
            body, _ = submit(page)
            expect(page.locator("#int_rate-error")).to_be_hidden()
            assert page.evaluate("document.activeElement.id") != "int_rate"
            p = check_prediction(page, body, 2)
            assert p.get("band") == "review", f"version 2 configures bands: {p}"
            expect(page.locator("#cutoff")).to_contain_text("Bands: approve below 5 %, review 5 % to 10 %, decline from 10 %.")
            assert page.evaluate("window.sameDocument === true"), "the page was reloaded"
            expect(page.locator("#model-version-line")).to_contain_text("version 2 serving")
            say("new version: the next answer names version 2, same page")

            # The reasons' wording for what this application did not exercise.
            for reason, want in WORDING:
                got = page.evaluate("([r, sent]) => reasonText(r, 1, sent)", [reason, {"purpose": None}])
                assert got == want, (got, want)
            say("wording: imputed values, categories and counts in plain words")

            # A version with two more inputs (both optional): after a reload
            # the form has their fields, from the version's own schema.
            say("COMMIT 3")
            line = sys.stdin.readline().strip()
            assert line == "SERVING 3", f"the test answered {line!r}"
            page.reload()
            expect(page.locator("#model-version-line")).to_contain_text("version 3 serving")
            expect(page.locator("#more-fieldset")).to_be_visible()
            expect(page.locator("label[for=term]")).to_have_text("Term (optional)")
            expect(page.locator("#term-help")).to_contain_text("If unknown, the model assumes")
            options = page.locator("#verification_status option").all_inner_texts()
            assert options == ["Not given", "Not Verified", "Source Verified", "Verified"], options
            for name, value in TYPED.items():
                page.fill(f"#{name}", value)
            for name, value in CHOSEN.items():
                page.select_option(f"#{name}", value)
            page.fill("#term", "60")
            page.select_option("#verification_status", "Not Verified")
            body, _ = submit(page)
            assert body == {**EXPECTED_BODY, "term": 60, "verification_status": "Not Verified"}, body
            check_prediction(page, body, 3)
            say("new inputs: version 3's twelve fields on the form, sent and answered")

            # On a phone: one column, nothing wider than the screen.
            page.set_viewport_size({"width": 360, "height": 740})
            overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
            assert overflow <= 0, f"the page is {overflow}px wider than a 360px phone"
            assert not errors, f"script errors on the page: {errors}"
            say("PASS")
        finally:
            browser.close()


if __name__ == "__main__":
    main()
