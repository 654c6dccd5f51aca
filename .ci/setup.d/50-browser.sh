# Headless Chromium for the browser tests (the web form, the HTML report),
# driven by Playwright for Python with executable_path=/usr/bin/chromium:
# never `playwright install`, the Debian build is the browser.
apt_install chromium chromium-driver
link_tool chromium /usr/bin/chromium
link_tool chromedriver /usr/bin/chromedriver
pip_install "$ROOT/.ci/requirements-browser.txt"
