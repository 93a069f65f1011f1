"""Write the example notebooks from their cells (keeps them reviewable as code).

Run ``python notebooks/make_notebooks.py``; the tests execute every notebook in this folder.
"""

from pathlib import Path

import nbformat as nbf

HERE = Path(__file__).parent

CELLS = [
    ("md", "# Walking through the demo study\n\nIngest the simulated study's wave files, score "
           "the four Allen-Sharp outputs, fit a growth model of perceptions and read the report. "
           "The pseudonymization key is made in a temporary folder here; in a real study it "
           "lives outside the repository and is backed up."),
    ("code", "import tempfile\nfrom pathlib import Path\n\nimport trackii_eval as te\n\n"
             "work = Path(tempfile.mkdtemp())\nte.write_key(work / 'demo.key')\n"
             "key = te.load_key(work / 'demo.key')\n"
             "root = Path.cwd().parent if Path.cwd().name == 'notebooks' else Path.cwd()\n"
             "study = te.Study.load(root / 'surveys' / 'demo', out=work / 'out')\nstudy"),
    ("code", "summary = study.ingest(key)\nsummary.table"),
    ("md", "Every row read is stored or quarantined; the table above reconciles per file."),
    ("code", "scores = study.scores()\nscores.head()"),
    ("code", "study.reliability().head()"),
    ("code", "fit = te.growth('perceptions ~ (time + post_time) * arm + (time | participant)', "
             "data=scores, reml=True)\nprint(fit.summary())"),
    ("code", "fit.fixed"),
    ("md", "The truth the demo was simulated with: compare `time:arm[T.dialogue]` and "
           "`post_time:arm[T.dialogue]` with the estimates above."),
    ("code", "import json\njson.loads((root / 'surveys/demo/truth.json').read_text())"
             "['effects']['perceptions']['model_terms']"),
    ("code", "study.fit_models()\npath = study.report()\npath.exists()"),
]


OWN_STUDY_CELLS = [
    ("md", "# Your own study from your own exports\n\nThree waves exported from three "
           "platforms (a Qualtrics CSV, an SPSS file with value labels, a KoboToolbox CSV with "
           "its XLSForm) and the evaluator's enrolment list, as in `surveys/onboarding/`. "
           "`init` drafts the configuration, a person corrects the guesses marked `# REVIEW`, "
           "`check` dry-runs it, and the study runs to a report. The same steps on the command "
           "line: `trackii-eval init | check | run`."),
    ("code", "import shutil\nimport tempfile\nfrom pathlib import Path\n\n"
             "import trackii_eval as te\nfrom trackii_eval.onboard.check import check_study\n"
             "from trackii_eval.onboard.init import init_study\n\n"
             "root = Path.cwd().parent if Path.cwd().name == 'notebooks' else Path.cwd()\n"
             "work = Path(tempfile.mkdtemp())\nstudy_dir = work / 'peace-panel'\n"
             "shutil.copytree(root / 'surveys' / 'onboarding', study_dir,\n"
             "                ignore=shutil.ignore_patterns('*.py'))\n"
             "sorted(p.name for p in study_dir.iterdir())"),
    ("code", "draft = init_study(study_dir)\nprint(draft.summary())\n"
             "print((study_dir / 'study.yaml').read_text())"),
    ("md", "Every guess is on a line marked `# REVIEW`. Note the wave-1 participant columns "
           "(`columns: {code: Q2, side: Q3}`), the enrolment list under `participants:`, the "
           "Qualtrics items mapped to the SPSS/Kobo names by their question text, and the "
           "reverse-keyed trust item:"),
    ("code", "print((study_dir / 'instrument.yaml').read_text())"),
    ("md", "The edits a person makes after reading the drafts: names and labels, and the end "
           "of the programme."),
    ("code", "edits = {\n"
             "    'study.yaml': [('name: peace-panel', 'name: \"Peace panel (simulated)\"'),\n"
             "                   ('{id: D1, name: D1,', '{id: D1, name: Borderlands dialogue,'),\n"
             "                   ('label: Wave 1,', 'label: Baseline,')],\n"
             "    'instrument.yaml': [('name: Drafted instrument', "
             "'name: Peace panel instrument')],\n}\n"
             "for name, changes in edits.items():\n"
             "    text = (study_dir / name).read_text()\n"
             "    for old, new in changes:\n        text = text.replace(old, new)\n"
             "    (study_dir / name).write_text(text)\n"
             "with open(study_dir / 'study.yaml', 'a') as f:\n"
             "    f.write('program_end_wave: 2\\n')"),
    ("code", "report = check_study(study_dir, out=work / 'out')\nprint(report.text())\n"
             "assert not report.needs_decision"),
    ("code", "te.write_key(work / 'study.key')\nkey = te.load_key(work / 'study.key')\n"
             "study = te.Study.load(study_dir, out=work / 'out')\n"
             "study.ingest(key).table"),
    ("code", "study.store.query('SELECT arm, side, count(*) AS participants FROM participants "
             "GROUP BY ALL ORDER BY ALL')"),
    ("code", "study.score()\nstudy.fit_models()\nstudy.report().exists()"),
]


def _write(cells: list[tuple[str, str]], name: str) -> None:
    nb = nbf.v4.new_notebook()
    for kind, text in cells:
        nb.cells.append(nbf.v4.new_markdown_cell(text) if kind == "md"
                        else nbf.v4.new_code_cell(text))
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbf.write(nb, HERE / name)


def build() -> None:
    _write(CELLS, "01_demo_walkthrough.ipynb")
    _write(OWN_STUDY_CELLS, "02_own_study.ipynb")


if __name__ == "__main__":
    build()
