"""Reading real bitext files, cleaning, splitting, and the errors for malformed input."""

from __future__ import annotations

import json
import logging
import re

import pytest
from conftest import SO_BITEXT, SW_BITEXT

from optical_lightning.data import BitextDataModule, BitextStats, clean_pairs, read_bitext, split_pairs
from optical_lightning.utils.errors import ConfigError, DataError


def test_reads_real_tico19_rows_with_quotes_intact():
    pairs = read_bitext(SW_BITEXT, "sw")
    assert len(pairs) == 200
    assert pairs[0].id.startswith("CMU_1:") and pairs[0].en and pairs[0].tgt
    with_quotes = [p for p in pairs if '"' in p.en]
    assert with_quotes, "the fixture has quoted text; csv quoting would have merged rows"
    assert len(read_bitext(SO_BITEXT, "so")) == 200


def test_wrong_language_column_names_the_file_and_the_fix():
    with pytest.raises(DataError, match=r"tico19\.dev200\.en-sw\.tsv line 1: .*lacks column.*'so'.*lang=so"):
        read_bitext(SW_BITEXT, "so")


def test_missing_file_says_how_to_get_it(tmp_path):
    with pytest.raises(DataError, match=r"not found: .*nope\.tsv - build it with `make data`"):
        read_bitext(tmp_path / "nope.tsv", "sw")


def test_malformed_row_names_file_line_and_expectation(tmp_path):
    path = tmp_path / "bad.tsv"
    path.write_text("id\ten\tsw\n1\tHello\tJambo\n2\tonly two fields\n")
    with pytest.raises(DataError, match=r"bad\.tsv line 3: expected 3 tab-separated fields \(id, en, sw\), found 2"):
        read_bitext(path, "sw")


def test_non_utf8_file_is_reported(tmp_path):
    path = tmp_path / "latin1.tsv"
    path.write_bytes("id\ten\tsw\n1\tcaf\xe9\tkahawa\n".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8"):
        read_bitext(path, "sw")


def test_jsonl_and_its_errors(tmp_path):
    good = tmp_path / "pairs.jsonl"
    good.write_text(json.dumps({"id": "a", "en": "Water", "sw": "Maji"}) + "\n\n" + json.dumps({"en": "Fire", "sw": "Moto"}) + "\n")
    pairs = read_bitext(good, "sw")
    assert [(p.en, p.tgt) for p in pairs] == [("Water", "Maji"), ("Fire", "Moto")]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"en": "Water", "sw": "Maji"}\n{"en": "Fire"\n')
    with pytest.raises(DataError, match=r"bad\.jsonl line 2: invalid JSON"):
        read_bitext(bad, "sw")
    wrong = tmp_path / "wrong.jsonl"
    wrong.write_text('{"en": "Water", "so": "Biyo"}\n')
    with pytest.raises(DataError, match=r"line 1: expected an object with string fields 'en' and 'sw'"):
        read_bitext(wrong, "sw")


def test_cleaning_counts_every_drop(tmp_path):
    path = tmp_path / "mixed.tsv"
    rows = ["id\ten\tsw", "1\tHello\tJambo", "2\t  \tTupu", "3\tHello \t jambo", "4\tWater  is\tMaji ni",
            "5\t" + "x" * 50 + "\tndefu", "6\tOk\t"]
    path.write_text("\n".join(rows) + "\n")
    stats = BitextStats()
    kept = clean_pairs(read_bitext(path, "sw"), max_chars=40, stats=stats)
    assert [p.id for p in kept] == ["1", "4"]
    assert kept[1].en == "Water is"  # whitespace collapsed
    assert (stats.read, stats.empty, stats.duplicates, stats.too_long, stats.kept) == (6, 2, 1, 1, 2)


def test_split_is_deterministic_and_disjoint():
    pairs = read_bitext(SW_BITEXT, "sw")
    train1, val1 = split_pairs(pairs, 0.1, seed=7)
    train2, val2 = split_pairs(pairs, 0.1, seed=7)
    assert [p.id for p in val1] == [p.id for p in val2] and len(val1) == 20
    assert not {p.id for p in train1} & {p.id for p in val1}
    _, val3 = split_pairs(pairs, 0.1, seed=8)
    assert {p.id for p in val3} != {p.id for p in val1}


def test_datamodule_batches_and_empty_set_error(tmp_path):
    dm = BitextDataModule(str(SW_BITEXT), "sw", val_size=10, batch_size=16)
    dm.setup("fit")
    assert len(dm.train_pairs) == 190 and len(dm.val_pairs) == 10
    first = next(iter(dm.train_dataloader()))
    assert len(first) == 16
    empty = tmp_path / "empty.tsv"
    empty.write_text("id\ten\tsw\n1\t \tx\n2\ty\t\n")
    with pytest.raises(DataError, match=r"no training pairs left .*2 read: 2 empty"):
        BitextDataModule(str(empty), "sw").setup("fit")


def test_unknown_language_code_is_rejected():
    with pytest.raises(ConfigError, match="use the ISO 639-1 code 'sw'"):
        BitextDataModule(str(SW_BITEXT), "swa")
    with pytest.raises(ConfigError, match="unknown language code 'xx'"):
        BitextDataModule(str(SW_BITEXT), "xx")


def test_source_column_is_counted_per_origin(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_text("id\ten\tsw\tsource\n1\tWater\tMaji\tkolibri\n2\tFire\tMoto\tdjango\n3\tEarth\tArdhi\tkolibri\n")
    stats = BitextStats()
    clean_pairs(read_bitext(path, "sw"), stats=stats)
    assert stats.per_source == {"train.tsv:kolibri": 2, "train.tsv:django": 1}


def _write_bitext(path, rows, lang="so"):
    path.write_text("id\ten\t" + lang + "\n" + "".join(f"{i}\t{en}\t{tgt}\n" for i, (en, tgt) in enumerate(rows)))
    return path


def test_number_agreement_flags_rows_shifted_by_one(tmp_path):
    from optical_lightning.data.alignment_check import number_agreement

    en = [f"In {1990 + i} there were {10 + i} cases." for i in range(10)] + ["No number here."]
    aligned = [(e, e.replace("there were", "kulikuwa na")) for e in en]
    # a translation lost after row 4: from there on every target line belongs to the next English line
    shifted = aligned[:5] + [(aligned[i][0], aligned[i + 1][1]) for i in range(5, 10)] + [(en[10], "Hakuna.")]
    ok = number_agreement(read_bitext(_write_bitext(tmp_path / "ok.tsv", aligned), "so"))
    bad = number_agreement(read_bitext(_write_bitext(tmp_path / "bad.tsv", shifted), "so"))
    assert (ok.pairs, ok.with_numbers, ok.own, ok.next, ok.previous) == (11, 10, 1.0, 0.0, 0.0)
    assert (bad.own, bad.next, bad.previous) == (0.5, 0.4, 0.0)  # row 9's target (row 10's text) has no number


def test_a_byte_order_mark_does_not_hide_the_first_column(tmp_path):
    path = tmp_path / "excel.tsv"  # what a spreadsheet's "UTF-8 CSV" export writes: a BOM glued to 'en'
    path.write_bytes(b"\xef\xbb\xbf" + b"en\tsw\nWater\tMaji\n")
    assert [(p.en, p.tgt) for p in read_bitext(path, "sw")] == [("Water", "Maji")]


def test_a_header_without_rows_and_a_folder_say_what_they_are(tmp_path):
    for name, text in (("empty.tsv", ""), ("blank.tsv", "\n\n"), ("empty.jsonl", "\n")):
        (tmp_path / name).write_text(text)
        with pytest.raises(DataError, match=rf"{name}: (empty file|no rows)") as e:
            read_bitext(tmp_path / name, "sw")
        assert "min_chars" not in str(e.value)
    header = tmp_path / "header.tsv"
    header.write_text("id\ten\tsw\n")
    with pytest.raises(DataError, match=r"header\.tsv: a header and no rows"):
        read_bitext(header, "sw")
    with pytest.raises(DataError, match=r"is a folder, not a bitext file \(it holds blank\.tsv, empty\.jsonl"):
        read_bitext(tmp_path, "sw")


def test_a_language_make_data_does_not_build_lists_those_it_does(tmp_path):
    for lang in ("sw", "so"):
        (tmp_path / "bitext" / lang).mkdir(parents=True)
        (tmp_path / "bitext" / lang / "train.tsv").write_text(f"id\ten\t{lang}\n1\ta\tb\n")
    with pytest.raises(DataError, match=r"no ha bitext: .* `make data` builds train\.tsv only for so, sw; "
                                        r"point data\.train=PATH at a TSV with columns 'id, en, ha'"):
        read_bitext(tmp_path / "bitext" / "ha" / "train.tsv", "ha")


def test_untranslated_rows_are_counted_and_warned_about(tmp_path, caplog):
    path = tmp_path / "copied.tsv"
    rows = [p for p in read_bitext(SW_BITEXT, "sw")]
    path.write_text("id\ten\tsw\n" + "".join(f"{p.id}\t{p.en}\t{p.en if i % 2 else p.tgt}\n" for i, p in enumerate(rows)))
    dm = BitextDataModule(str(path), "sw", val_size=0)
    with caplog.at_level("WARNING"):
        dm.setup()
    assert dm.stats.identical == 100
    assert "100 of 200 pairs" in caplog.text and "same text in en and sw" in caplog.text


def test_a_held_out_count_larger_than_the_data_keeps_half_for_training(caplog):
    dm = BitextDataModule(str(SW_BITEXT), "sw", val_size=256)
    with caplog.at_level("WARNING"):
        dm.setup()
    assert (len(dm.train_pairs), len(dm.val_pairs)) == (100, 100)
    assert "data.val_size=256 of only 200 pairs" in caplog.text


@pytest.mark.parametrize("kwargs,message", [
    ({"batch_size": "abc"}, r"data\.batch_size='abc': must be an integer >= 1"),
    ({"max_pairs": 0}, r"data\.max_pairs=0: must be >= 2"),
    ({"val_size": -5}, r"data\.val_size=-5: must be >= 0"),
    ({"val_size": 1.5}, r"data\.val_size=1\.5: a share must lie in \[0, 1\)"),
])
def test_impossible_data_settings_name_the_key(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        BitextDataModule(str(SW_BITEXT), "sw", **kwargs)


def test_columns_swapped_under_a_correct_header_are_warned_about_with_counts(tmp_path, caplog):
    rows = [line.split("\t") for line in SW_BITEXT.read_text(encoding="utf-8").splitlines()[1:]]
    swapped = tmp_path / "swapped.tsv"
    swapped.write_text("id\ten\tsw\n" + "".join(f"{i}\t{sw}\t{en}\n" for i, en, sw in rows), encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="optical_lightning.data.bitext"):
        read_bitext(SW_BITEXT, "sw")
        read_bitext(SO_BITEXT, "so")
        assert not caplog.records  # real files, the right way round
        read_bitext(swapped, "sw")
    [record] = caplog.records
    reverse, forward = map(int, re.search(r"does not in (\d+) of 200 rows \(the reverse in (\d+)\)",
                                          record.getMessage()).groups())
    assert reverse > 150 and forward < 5 and "are the columns swapped?" in record.getMessage()
