"""The demo's corpus: short paragraphs on Python's standard library, with distractors on other subjects.

Each question in ``QUESTIONS`` has exactly one paragraph that answers it
(``expected``), written without the question's key words where possible, so
a right answer shows meaning, not word overlap. It ships in the package: the
demo needs no download.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Document:
    id: int
    title: str
    text: str


DOCUMENTS = (
    Document(1, "open()", "The built-in open() function takes a path and a mode such as 'r' or 'w' and returns a "
             "file object; read() gives its contents, write() adds to it, and a with-statement closes it for you."),
    Document(2, "json", "The json module turns JSON text into dictionaries and lists with json.loads(), and "
             "Python objects back into JSON text with json.dumps()."),
    Document(3, "subprocess", "subprocess.run() starts another program, waits for it to finish and, with "
             "capture_output=True, hands back what it printed on stdout and stderr."),
    Document(4, "datetime", "The datetime module represents dates and times; datetime.now() is the current moment, "
             "and subtracting two datetimes gives a timedelta."),
    Document(5, "re", "The re module matches text against regular expressions: re.search() finds a pattern "
             "anywhere in a string, and re.sub() replaces every match."),
    Document(6, "sqlite3", "sqlite3 stores tables in a single file on disk; connect() opens the database, and "
             "execute() runs SQL statements with ? placeholders for values."),
    Document(7, "threading", "The threading module runs functions concurrently in threads of one process; a Lock "
             "keeps two threads from changing shared data at the same time."),
    Document(8, "random", "random.choice() picks an element of a sequence at random, random.shuffle() reorders a "
             "list in place, and random.seed() makes the sequence repeatable."),
    Document(9, "csv", "The csv module reads and writes comma-separated values; csv.DictReader yields each row of "
             "a spreadsheet export as a dictionary keyed by the header line."),
    Document(10, "logging", "The logging module records what a program does at levels from DEBUG to CRITICAL, "
             "and handlers send those messages to the console, files or elsewhere."),
    Document(11, "pathlib", "pathlib.Path objects represent file system paths: joining with /, listing a "
             "directory with iterdir(), and checking whether a path exists."),
    Document(12, "hashlib", "hashlib computes message digests such as SHA-256 of bytes, used to check that a "
             "download was not corrupted or to fingerprint data."),
    Document(13, "time.sleep", "time.sleep(seconds) suspends the calling thread for the given number of seconds, "
             "which is how a script waits before trying again."),
    Document(14, "unittest", "unittest organises tests in TestCase classes whose methods call assertEqual and "
             "friends; python -m unittest discovers and runs them."),
    Document(15, "zipfile", "zipfile reads and writes ZIP archives: ZipFile.extractall() unpacks every member, "
             "and write() adds a file to an archive."),
    Document(16, "France", "Paris is the capital and largest city of France, on the river Seine; the Eiffel "
             "Tower was built there for the 1889 World's Fair."),
    Document(17, "photosynthesis", "Plants turn sunlight, water and carbon dioxide into sugar and oxygen through "
             "photosynthesis, which takes place in their chloroplasts."),
    Document(18, "coffee", "Espresso is brewed by forcing hot water through finely ground coffee under pressure; "
             "a latte adds steamed milk."),
    Document(19, "chess", "In chess the king moves one square in any direction, and the game is won by "
             "checkmate, when the king is attacked and cannot escape."),
    Document(20, "volcanoes", "A volcano erupts when molten rock, gas and ash escape from a magma chamber "
             "beneath the Earth's crust."),
)

# (question, id of the paragraph that answers it)
QUESTIONS = (
    ("How do I open a file and read what is in it?", 1),
    ("turn a JSON string into a Python dictionary", 2),
    ("run an external command and get its output", 3),
    ("pause my script for a few seconds", 13),
    ("what is the capital city of France?", 16),
)


def texts() -> list[str]:
    return [document.text for document in DOCUMENTS]


def by_id(document_id: int) -> Document:
    return next(document for document in DOCUMENTS if document.id == document_id)
