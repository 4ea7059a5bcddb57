"""The console at /ui, driven in Debian's headless chromium against the running stack.

Selenium is pointed at /usr/bin/chromium and /usr/bin/chromedriver and runs offline: no
browser or driver is downloaded. Every test saves a screenshot under the session's
`console` temporary folder (its path is printed) for a person to look at.
"""

import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from ray import serve

from schemas.items import ITEM_TOPICS, Modality
from services.api.deployment import QueryService
from services.api.routers.console import CONSOLE_DIR
from tests.fixtures_stack import index_unique_face
from tests.test_api_errors import b64
from tests.test_dead_letters_api import NO_FACE, produce_no_face, wait_dead_letter

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support import expected_conditions as ec  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WAIT_S = 30

pytestmark = pytest.mark.skipif(
    not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
    reason="needs Debian's chromium and chromium-driver (scripts/install-system.sh --test)",
)


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("console")
    print(f"\nconsole screenshots: {folder}")
    return folder


@pytest.fixture(scope="module")
def browser(stack) -> Iterator[WebDriver]:
    # Selenium Manager must never fetch a browser or driver: both are given, and it is offline.
    os.environ["SE_OFFLINE"] = "true"
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument("--window-size=1280,1000")
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.get(f"{stack.url}/ui")
    try:
        yield driver
    finally:
        driver.quit()


def wait(driver: WebDriver):
    return WebDriverWait(driver, WAIT_S)


def open_tab(driver: WebDriver, name: str) -> None:
    driver.find_element(By.ID, f"tab-{name}").click()
    wait(driver).until(ec.visibility_of_element_located((By.ID, name)))


def search_by_upload(driver: WebDriver, path: Path, k: int = 5) -> list[dict]:
    """Upload `path` on the Search page; the matches shown, each with its thumbnail loaded."""
    open_tab(driver, "search")
    driver.find_element(By.ID, "search-id").clear()
    driver.find_element(By.ID, "search-file").send_keys(str(path))
    Select(driver.find_element(By.ID, "search-modality")).select_by_value("face")
    box = driver.find_element(By.ID, "search-k")
    box.clear()
    box.send_keys(str(k))
    summary = driver.find_element(By.ID, "search-summary")
    driver.execute_script("arguments[0].textContent = ''", summary)
    driver.find_element(By.CSS_SELECTOR, "#search-form button[type=submit]").click()
    wait(driver).until(lambda d: "matches by" in summary.text)
    # Every thumbnail fetched with the page's key and decoded by the browser.
    loaded = "return [...document.querySelectorAll('#search-results img')]" + (
        ".filter(i => i.complete && i.naturalWidth > 0).length"
    )
    wait(driver).until(lambda d: d.execute_script(loaded) == k)
    return driver.execute_script(
        """return [...document.querySelectorAll('#search-results li')].map(li => ({
            id: li.querySelector('.id').textContent,
            label: li.querySelector('.label').textContent,
            verdict: li.querySelector('.same, .different').textContent,
            width: li.querySelector('img').naturalWidth}))"""
    )


def test_a_search_by_upload_shows_the_persons_thumbnail_first(browser, demo_data, shots, api):
    probe = demo_data.held_out[Modality.FACE][2]
    matches = search_by_upload(browser, probe.path)
    assert matches[0]["label"] == probe.label and matches[0]["verdict"] == "same"
    assert matches[0]["id"].startswith(f"orl/{probe.label}/") and matches[0]["width"] > 0
    # What the API answers (near-equal distances may swap between the index's copies), and
    # the threshold of the model that answered.
    answer = api.post(
        "/v1/search/upload", data={"modality": "face", "k": "5"}, files={"item": probe.read_bytes()}
    ).json()
    assert matches[0]["id"] == answer["matches"][0]["id"]
    assert {m["id"] for m in matches} == {m["id"] for m in answer["matches"]}
    summary = browser.find_element(By.ID, "search-summary").text
    assert answer["model_version"] in summary and "threshold" in summary
    # The query is previewed (PGM decoded in the page) with the detected face's box, if any.
    preview = browser.find_element(By.CSS_SELECTOR, "#search-query img")
    assert browser.execute_script("return arguments[0].naturalWidth", preview) > 0
    if answer["query_face"]:
        assert browser.find_elements(By.CSS_SELECTOR, "#search-query .face-box")
    browser.save_screenshot(str(shots / "search.png"))


def test_a_delete_from_the_items_page_removes_the_item_from_search(
    browser, stack, stack_settings, demo_data, shots, tmp_path
):
    face = demo_data.held_out[Modality.FACE][7]
    item_id, image = index_unique_face(stack, stack_settings, face, "console-delete")
    upload = tmp_path / "query.png"
    upload.write_bytes(image)
    assert search_by_upload(browser, upload)[0]["id"] == item_id

    open_tab(browser, "items")
    Select(browser.find_element(By.ID, "items-modality")).select_by_value("face")
    browser.find_element(By.ID, "items-label").send_keys(face.label)
    browser.find_element(By.CSS_SELECTOR, "#items-form button[type=submit]").click()
    # Only the label asked for, ordered by id: the new item leads its label's page.
    listed = """return [...document.querySelectorAll('#items-table tbody tr')]
        .map(r => [r.cells[0].textContent, r.cells[1].textContent])"""
    wait(browser).until(lambda d: {label for _, label in d.execute_script(listed)} == {face.label})
    assert browser.execute_script(listed)[0][0] == item_id
    browser.find_element(By.XPATH, f"//td/button[text()='{item_id}']").click()
    detail = wait(browser).until(ec.visibility_of_element_located((By.ID, "item-detail")))
    wait(browser).until(
        lambda d: d.execute_script(
            "const i = document.querySelector('#item-detail img'); return i && i.naturalWidth"
        )
    )
    assert "twinstream.face" in detail.text and "partition" in detail.text
    browser.save_screenshot(str(shots / "item.png"))
    browser.find_element(By.ID, "item-delete").click()
    confirm = wait(browser).until(ec.element_to_be_clickable((By.ID, "delete-confirm")))
    assert item_id in browser.find_element(By.ID, "delete-title").text
    confirm.click()
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "status"), f"deleted {item_id}"))
    assert not browser.find_elements(By.XPATH, f"//td/button[text()='{item_id}']")

    after = search_by_upload(browser, upload, k=10)
    assert item_id not in {m["id"] for m in after}
    assert after[0]["label"] == face.label


def test_compare_puts_the_distance_on_a_bar_against_the_threshold(browser, api, demo_data, shots):
    probe = demo_data.held_out[Modality.FACE][4]
    other = next(f for f in demo_data.indexed[Modality.FACE] if f.label == probe.label)
    open_tab(browser, "compare")
    browser.find_element(By.ID, "compare-a-file").send_keys(str(probe.path))
    browser.find_element(By.ID, "compare-b-id").send_keys(other.id)
    browser.find_element(By.CSS_SELECTOR, "#compare-form button[type=submit]").click()
    bar = wait(browser).until(ec.visibility_of_element_located((By.ID, "compare-bar")))
    verdict = browser.find_element(By.ID, "compare-verdict").text
    answer = api.post(
        "/v1/similarity",
        json={"modality": "face", "a": {"data": b64(probe.read_bytes())}, "b": {"id": other.id}},
    ).json()
    assert verdict.startswith("same" if answer["same"] else "different")
    assert f"threshold {answer['threshold']:.4f}" in verdict
    assert f"{answer['distance']:.4f}" in bar.get_attribute("aria-label")
    fill, mark = (
        browser.execute_script(f"return document.querySelector('#compare-bar {part}').style.{side}")
        for part, side in ((".fill", "width"), (".threshold", "left"))
    )
    # Both on one scale: the fill ends left of the threshold mark exactly when `same`.
    assert (float(fill.rstrip("%")) <= float(mark.rstrip("%"))) == answer["same"]
    browser.save_screenshot(str(shots / "compare.png"))


def test_the_models_and_stream_health_pages_show_the_running_stack(browser, api, shots):
    ready = api.get("/readyz").json()
    open_tab(browser, "models")
    active = ready["model_versions"]["face"]
    row = wait(browser).until(
        ec.visibility_of_element_located((By.CSS_SELECTOR, f'tr[data-version="{active}"]'))
    )
    assert "active" in row.text
    browser.save_screenshot(str(shots / "models.png"))

    open_tab(browser, "health")
    wait(browser).until(ec.text_to_be_present_in_element((By.ID, "health-ready"), "ready"))
    lag_rows = browser.find_elements(By.CSS_SELECTOR, "#health-lag tbody tr")
    partitions = {tuple(r.text.split()[:2]) for r in lag_rows}
    assert {t for t, _ in partitions} == {ITEM_TOPICS[m] for m in Modality}
    modalities = browser.find_element(By.ID, "health-modalities").text
    assert active in modalities and "up" in modalities
    assert "dead letters" in browser.find_element(By.ID, "health-ingest").text
    browser.save_screenshot(str(shots / "health.png"))


# Counts the console's requests by path, wrapped around the page's own fetch.
COUNT_FETCHES = """
window.fetched = {};
const original = window.fetch;
window.fetch = (url, init) => {
  const path = new URL(url, location.href).pathname;
  window.fetched[path] = (window.fetched[path] || 0) + 1;
  return original(url, init);
};
"""


def _fetched(driver: WebDriver, path: str) -> int:
    return driver.execute_script(f"return window.fetched['{path}'] || 0")


# Before any test here makes a dead letter: its count moving mid-test would be a fair read.
def test_the_health_page_reads_the_dead_letters_from_kafka_only_when_their_count_moves(browser):
    """Each read of the list opens a Kafka consumer: the 5-second refresh reads /readyz and
    /metrics, and the list only when the dead-letter count changed; Refresh always reads it."""
    browser.execute_script(COUNT_FETCHES)
    open_tab(browser, "health")
    # Opening the tab, then two timed refreshes.
    WebDriverWait(browser, 20).until(lambda driver: _fetched(driver, "/readyz") >= 3)
    assert _fetched(browser, "/v1/dead-letters") == 1
    browser.find_element(By.ID, "health-refresh").click()
    WebDriverWait(browser, 10).until(lambda driver: _fetched(driver, "/v1/dead-letters") == 2)


def test_every_control_is_reachable_by_keyboard_and_labelled(browser):
    open_tab(browser, "search")
    unlabelled = browser.execute_script(
        """return [...document.querySelectorAll('input, select')]
            .filter(e => !(e.labels && e.labels.length)).map(e => e.id)"""
    )
    assert unlabelled == []
    tab = browser.find_element(By.ID, "tab-search")
    tab.send_keys("\ue014")  # ArrowRight: the next tab takes focus and opens
    assert browser.switch_to.active_element.get_attribute("id") == "tab-compare"
    assert browser.find_element(By.ID, "compare").is_displayed()


RETRAIN_WAIT_S = 300


def _active(api, modality: str) -> str:
    models = api.get("/v1/models").json()["models"][modality]
    return next(m["version"] for m in models if m["active"])


def test_a_retrain_started_from_the_models_page_shows_its_phases(browser, api, shots):
    before = _active(api, "audio")
    open_tab(browser, "models")
    Select(browser.find_element(By.ID, "retrain-modality")).select_by_value("audio")
    Select(browser.find_element(By.ID, "retrain-preset")).select_by_value("quick")
    browser.find_element(By.CSS_SELECTOR, "#retrain-form button[type=submit]").click()
    outcome = browser.find_element(By.ID, "retrain-outcome")
    WebDriverWait(browser, RETRAIN_WAIT_S).until(lambda d: outcome.text)
    phases = [li.text for li in browser.find_elements(By.CSS_SELECTOR, "#retrain-phases li")]
    browser.save_screenshot(str(shots / "retrain.png"))
    state = browser.find_element(By.ID, "retrain-state").text
    run_id = state.split()[1].rstrip(":")
    run = api.get(f"/v1/retrain/{run_id}").json()
    assert run["status"] == "succeeded", run
    # Polled once a second: the page saw the run move through training to its verdict.
    assert "training" in phases and phases[-1] == run["phase"]
    assert phases[-1] in ("promoted", "rejected")
    assert ("promoted" if run["promoted"] else "not promoted") in outcome.text
    if run["promoted"]:
        # The tests after this one expect the session's own audio model.
        assert api.post(f"/v1/models/{before}/activate").status_code == 200
    assert _active(api, "audio") == before


KEY = "console-key"


@pytest.fixture
def secured_url(stack, stack_settings) -> Iterator[str]:
    """A second app on the running Serve instance with an API key, under a route prefix."""
    settings = stack_settings.model_copy(update={"api_key": SecretStr(KEY)})
    serve.run(QueryService.bind(settings), name="console-secured", route_prefix="/keyed")
    try:
        yield f"{stack.url}/keyed"
    finally:
        serve.delete("console-secured")


def test_with_a_key_set_the_page_asks_for_it_once_and_sends_it(browser, secured_url, shots):
    browser.get(f"{secured_url}/ui")
    try:
        open_tab(browser, "items")
        key = wait(browser).until(ec.visibility_of_element_located((By.ID, "api-key")))
        assert "401" in browser.find_element(By.ID, "status").text
        browser.save_screenshot(str(shots / "key.png"))
        key.send_keys(KEY)
        browser.find_element(By.CSS_SELECTOR, "#key-form button[type=submit]").click()
        assert not browser.find_element(By.ID, "key-form").is_displayed()
        browser.find_element(By.CSS_SELECTOR, "#items-form button[type=submit]").click()
        # Under the route prefix too: the page's calls are relative to where it is served.
        wait(browser).until(ec.text_to_be_present_in_element((By.ID, "items-summary"), "1–25 of"))
    finally:
        browser.get(f"{secured_url.removesuffix('/keyed')}/ui")


def test_the_models_page_draws_the_active_versions_roc_and_det_curves(browser, api, shots):
    active = api.get("/readyz").json()["model_versions"]["face"]
    curve = next(
        m["metrics"]["held_out_curve"]
        for m in api.get("/v1/models").json()["models"]["face"]
        if m["version"] == active
    )
    open_tab(browser, "models")
    toggle = wait(browser).until(
        ec.element_to_be_clickable((By.XPATH, f"//button[text()='Curves of {active}']"))
    )
    toggle.click()
    shown = wait(browser).until(ec.visibility_of_element_located((By.ID, f"curves-{active}")))
    assert toggle.get_attribute("aria-expanded") == "true"
    charts = shown.find_elements(By.CSS_SELECTOR, "svg.curve")
    labels = [c.get_attribute("aria-label") for c in charts]
    assert [label.split(":")[0] for label in labels] == ["ROC", "DET"]
    # One line per chart through every recorded operating point.
    for chart in charts:
        line = chart.find_element(By.CSS_SELECTOR, "path.line").get_attribute("d")
        assert line.count("L") == len(curve["far"]) - 1
    # The audio model's too, for the screenshot: its held-out speakers overlap, faces do not.
    audio = api.get("/readyz").json()["model_versions"]["audio"]
    browser.find_element(By.XPATH, f"//button[text()='Curves of {audio}']").click()
    audio_curves = wait(browser).until(ec.visibility_of_element_located((By.ID, f"curves-{audio}")))
    assert len(audio_curves.find_elements(By.CSS_SELECTOR, "svg.curve path.line")) == 2
    browser.execute_script("arguments[0].scrollIntoView()", shown)
    browser.save_screenshot(str(shots / "models-curves.png"))


def test_the_stream_health_page_lists_a_dead_letter_with_its_reason(
    browser, api, stack_settings, shots
):
    key = f"console-dlq-{uuid.uuid4().hex[:8]}/no-face"
    partition, offset = produce_no_face(stack_settings, key)
    wait_dead_letter(api, key)
    open_tab(browser, "health")
    browser.find_element(By.ID, "health-refresh").click()
    row = wait(browser).until(
        ec.visibility_of_element_located(
            (By.XPATH, f"//table[@id='health-dead-letters']//tr[td[2][text()='{key}']]")
        )
    )
    cells = [td.text for td in row.find_elements(By.TAG_NAME, "td")]
    assert cells[2:] == ["face", NO_FACE, ITEM_TOPICS[Modality.FACE], str(partition), str(offset)]
    browser.execute_script("arguments[0].scrollIntoView()", row)
    browser.save_screenshot(str(shots / "health-dlq.png"))


# WCAG 2 AA: 4.5:1 for text, 3:1 for what is not text (the focus ring).
TEXT_ON = [
    ("ink", "ground"),
    ("muted", "ground"),
    ("muted", "panel"),
    ("accent", "ground"),
    ("same", "panel"),
    ("different", "panel"),
    ("different", "ground"),
]


def _luminance(colour: str) -> float:
    channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    r, g, b = (c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _contrast(a: str, b: str) -> float:
    light, dark = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def test_the_console_colours_meet_wcag_aa_contrast():
    css = (CONSOLE_DIR / "console.css").read_text()
    colours = dict(re.findall(r"--([a-z]+):\s*(#[0-9a-fA-F]{6})", css))
    for text, ground in TEXT_ON:
        assert _contrast(colours[text], colours[ground]) >= 4.5, (text, ground)
    # White on the filled buttons and the selected tab.
    assert _contrast("#ffffff", colours["accent"]) >= 4.5
    assert _contrast("#ffffff", colours["different"]) >= 4.5
    assert _contrast(colours["focus"], colours["ground"]) >= 3
