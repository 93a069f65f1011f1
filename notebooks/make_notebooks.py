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


def build() -> None:
    nb = nbf.v4.new_notebook()
    for kind, text in CELLS:
        nb.cells.append(nbf.v4.new_markdown_cell(text) if kind == "md"
                        else nbf.v4.new_code_cell(text))
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbf.write(nb, HERE / "01_demo_walkthrough.ipynb")


if __name__ == "__main__":
    build()
