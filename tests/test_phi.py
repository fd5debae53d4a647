"""agent/phi.py: a patient's name, id and birth date found in free text in the forms they are written."""
import pytest

from agent.extract.record import PHI
from agent.phi import pattern, redact, scrub_tree


@pytest.mark.parametrize("text, name, birth", [
    ("CT head DOB 14.03.1952", "Smithson^Johanna", "19520314"),
    ("born 14/03/1952", "Smithson^Johanna", "19520314"),
    ("1952.03.14 follow-up", "Smithson^Johanna", "19520314"),
    ("Thorax 14-Mar-1952", "Smithson^Johanna", "19520314"),
    ("dob March 14, 1952", "Smithson^Johanna", "19520314"),
    ("03/14/52 chest", "Smithson^Johanna", "19520314"),
    ("pt 19520314", "Smithson^Johanna", "19520314"),
    ("Schädel 山田 nativ", "Yamada^Tarou=山田^太郎", None),
    ("abdomen Ng", "Ng^Bo", None),
    ("Meyer knee", "Meyer-Lansky^Anna", None),
    ("MUELLER Abdomen", "Müller^Jürgen", None),
    ("Muller Abdomen", "Müller^Jürgen", None),
    ("OBrien chest", "O'Brien^Sean", None),
    ("O'Brien chest", "O'Brien^Sean", None),
    ("Johanna Smithson head", "Smithson^Johanna", None),
    ("Smithsons follow-up", "Smithson^Johanna", None),
    ("Müllers Befund", "Müller^Jürgen", None),
    ("MUELLERS Befund", "Müller^Jürgen", None),
    # run together, as typed in a hurry (found by an audit: these were sent to the central site)
    ("Proto vanderberg", "Van-der Berg^Anna Maria", None),
    ("pt VanDerBerg repeat", "Van-der Berg^Anna Maria", None),
    ("AnnaMaria head", "Van-der Berg^Anna Maria", None),
    # two-digit years without separators, year first, ordinal days
    ("Head 140352-1234", "Smithson^Johanna", "19520314"),
    ("pt 520314", "Smithson^Johanna", "19520314"),
    ("dob 52-03-14", "Smithson^Johanna", "19520314"),
    ("031452 chest", "Smithson^Johanna", "19520314"),
    ("CT born 14th March 1952", "Smithson^Johanna", "19520314"),
    ("born on the 14th of March 1952", "Smithson^Johanna", "19520314"),
    ("dob March 14th, 1952", "Smithson^Johanna", "19520314"),
])
def test_identity_is_found_in_the_forms_it_is_written(text, name, birth):
    found = pattern(PHI(patient_name=name, birth_date=birth))
    assert found.search(text), text
    assert "[removed]" in redact(text, found)


@pytest.mark.parametrize("text", ["CT Thorax 1.25 mm", "Head 120 kV 2024-03-14", "Routine Abdomen/Pelvis",
                                  "Series 3 of 14", "Coronary angiography LAO 30"])
def test_text_without_identity_is_left_alone(text):
    found = pattern(PHI(patient_name="Smithson^Johanna", patient_id="PID-4711", birth_date="19520314"))
    assert redact(text, found) == text


def test_the_id_is_found_unless_it_is_sent_on_purpose():
    phi = PHI(patient_id="PID-4711")
    assert redact("re-scan PID-4711", pattern(phi)) == "re-scan [removed]"
    assert pattern(phi, include_id=True) is None


def test_scrub_tree_replaces_whole_values_and_spares_uids_and_pseudonyms():
    body = {"study": {"description": "Smithson abdomen"}, "study_instance_uid": "1.2.3.19520314",
            "events": [{"protocol": "Head"}, {"protocol": "14.03.1952 repeat"}], "pseudonym": "ab12"}
    changed = scrub_tree(body, pattern(PHI(patient_name="Smithson^Johanna", birth_date="19520314")))
    assert changed == ["study.description", "events.1.protocol"]
    assert body["study"]["description"] == "[removed]" and body["events"][0]["protocol"] == "Head"
    assert body["study_instance_uid"] == "1.2.3.19520314"


def test_scrub_tree_keeps_the_date_of_an_examination_on_the_day_of_birth():
    body = {"study": {"datetime": "2014-06-20T10:48:05", "description": "born 2014-06-20"},
            "events": [{"datetime_started": "2014-06-20T10:48:05", "protocol": "Chest"}]}
    changed = scrub_tree(body, pattern(PHI(patient_name="Smithson^Johanna", birth_date="20140620")))
    assert changed == ["study.description"]
    assert body["study"]["datetime"] == body["events"][0]["datetime_started"] == "2014-06-20T10:48:05"


@pytest.mark.parametrize("text", ["Head CT MRN0778899", "MRN 0778899 chest", "mrn778899 abdomen", "pt 778899 abdomen",
                                  "MRN_0778899", "O'Connell head", "Siobhan O Connell", "OCONNELL knee"])
def test_the_id_and_the_name_are_found_written_otherwise(text):
    """An id written with other separators, none, or without its prefix and leading zeros; a name the
    DICOM header writes Oconnell written O'Connell or O Connell."""
    found = pattern(PHI(patient_id="MRN-0778899", patient_name="Oconnell^Siobhan"))
    assert "[removed]" in redact(text, found), text


@pytest.mark.parametrize("text", ["DLP 778 mGy", "series 1778899", "CTDIvol 12.5 mGy 0778", "Con nell"])
def test_parts_of_numbers_and_of_words_are_not_taken_for_the_id_or_the_name(text):
    found = pattern(PHI(patient_id="MRN-0778899", patient_name="Oconnell^Siobhan"))
    assert redact(text, found) == text


@pytest.mark.parametrize("text", ["ID00123456", "station ID00123456", "MRN:00123456", "pid#123456"])
def test_an_id_of_digits_is_found_right_after_letters(text):
    found = pattern(PHI(patient_id="00123456"))
    assert redact(text, found).endswith("[removed]"), text
    assert redact("series 1001234567", found) == "series 1001234567"  # inside a longer number: not the id


@pytest.mark.parametrize("text", ["pat 0778899", "MRN 0778899", "mrn-778899"])
def test_an_id_of_letters_and_digits_run_together_is_found_with_its_parts_apart(text):
    assert "[removed]" in redact(text, pattern(PHI(patient_id="MRN0778899"))), text


@pytest.mark.parametrize("text, name, pid, birth", [
    ("re-scan 001 234 56", None, "00123456", None),
    ("id 1234 5678", None, "12345678", None),
    ("12.345.678 chest", None, "12345678", None),
    ("CT Thorax BJORNSTAD", "Bjørnstad^Øyvind", None, None),
    ("Bjoernstad follow-up", "Bjørnstad^Øyvind", None, None),
    ("Lukasz Walesa CT", "Wałęsa^Łukasz", None, None),
    ("Aasmund abdomen", "Åsmund^Ågot", None, None),
    ("Nguyen Van Duc", "Nguyễn^Văn Đức", None, None),
    ("Müller Abdomen", "Mueller^Hans", None, None),
    ("Straße", "Strasse^Hans", None, None),
    ("SMITHJOHN head", "Smith^John", None, None),
    ("JohnSmith", "Smith^John", None, None),
    ("dob Jan-31-1980", None, None, "19800131"),
    ("geb. 31. Januar 1980", None, None, "19800131"),
    ("born 31–01–1980", None, None, "19800131"),
    ("31 - 01 - 1980", None, None, "19800131"),
    ("1980 January 31", None, None, "19800131"),
    ("Jan 31 '80", None, None, "19800131"),
])
def test_identity_written_in_more_ways_is_found(text, name, pid, birth):
    """A second audit: ids with spaces or dots inside, letters Unicode does not decompose (ø, ł, å, đ),
    an ASCII header against an umlaut in the text, family and given name run together, dates with dashes of
    every kind, German month names and years first; each of these reached the central site."""
    found = pattern(PHI(patient_id=pid, patient_name=name, birth_date=birth))
    assert "[removed]" in redact(text, found), text


@pytest.mark.parametrize("text, name, pid", [
    ("2026-03-25T00:00:00", None, "0000000025"),
    ("CT Thorax 25 mm", None, "0000000025"),
    ("CT Thorax 1.25 mm", None, "00000001"),
    ("CTAWP00001", None, "00000001"),
    ("DLP 1234.56 mGycm", None, "123456"),
    ("DAP 123456.7 mGycm2", None, "123456"),
    ("CTDIvol 0.123456", None, "123456"),
    ("CTDIvol 12.345 mGy", None, "0012345"),
    ("ACC123456X", None, "123456"),
    ("qwer12345j", None, "12345"),
    ("TC de Cráneo", "de la Cruz^María", None),
    ("Fuß van links", "van der Berg^Jan", None),
    ("von Willebrand", "von Müller^Hans", None),
    ("Fußgelenk links", "Fu^Ming", None),
    ("Liège, Gas im Abdomen", "Ga^Li", None),
    ("CT als Kontrolle", "Ng^Al", None),
    ("É. coli", "Ø^É", None),
])
def test_what_only_resembles_a_short_id_or_a_name_particle_is_left_alone(text, name, pid):
    """Over-redaction: id 0000000025 removed every 25 (the study's date reached the central site as
    [removed]); the particle "de" of a patient's name removed "TC de Cráneo"."""
    found = pattern(PHI(patient_id=pid, patient_name=name))
    assert redact(text, found) == text
