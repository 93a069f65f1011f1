"""Write the example notebooks from their cells (keeps them reviewable as code).

Run ``python notebooks/make_notebooks.py``; the tests execute every notebook in this folder.
"""

from pathlib import Path

import nbformat as nbf

HERE = Path(__file__).parent

SETUP = ("code", "import json\nimport tempfile\nfrom pathlib import Path\n\nimport pandas as pd\n\n"
               "import trackii_eval as te\n\npd.set_option('display.width', 160)\n"
               "root = Path.cwd().parent if Path.cwd().name == 'notebooks' else Path.cwd()\n"
               "work = Path(tempfile.mkdtemp())\nte.write_key(work / 'demo.key')\n"
               "key = te.load_key(work / 'demo.key')\n"
               "study = te.Study.load(root / 'surveys' / 'demo', out=work / 'out')\nstudy")

QUICKSTART_CELLS = [
    ("md", "# Quickstart: from wave files to the impact report\n\n"
           "The simulated demo study in `surveys/demo/` (three Track II dialogues and a "
           "comparison group, five survey waves) run through every stage: ingest, score, "
           "model, report. The pseudonymization key is made in a temporary folder here; in a "
           "real study it lives outside the repository and is backed up."),
    SETUP,
    ("md", "**Ingest** reads every wave file, pseudonymizes and links participants across "
           "waves, and stores or quarantines every row; the table reconciles per file."),
    ("code", "summary = study.ingest(key)\nsummary.table"),
    ("md", "**Score, model, report.** The analysis plan is built from `study.yaml` (or given "
           "with `--plan`); the report is one self-contained HTML file with `manifest.json` "
           "beside it."),
    ("code", "study.score()\nresults = study.fit_models()\nreport = study.report()\n"
             "sorted(p.name for p in report.parent.iterdir())"),
    ("code", "from trackii_eval.report.pdf import write_report_pdfs\n\n"
             "pdfs = write_report_pdfs(report)\n[p.name for p in pdfs]"),
    ("md", "The headline model: how the gap between dialogue participants and the comparison "
           "group changed per year during the programme and after it (POMP points, 0-100)."),
    ("code", "fit = results.fits['perceptions_durability']\n"
             "fit.tidy().query(\"role == 'effect'\")"
             "[['term', 'estimate', 'ci_low', 'ci_high', 'p_value']].round(3)"),
    ("md", "The same from the command line:\n\n```\n"
           "trackii-eval keygen --out ~/.config/trackii_eval/demo.key\n"
           "trackii-eval run surveys/demo --out build/demo "
           "--key-file ~/.config/trackii_eval/demo.key --pdf\n```\n\n"
           "`notebooks/01_demo_analysis.ipynb` works through the analysis; "
           "`notebooks/02_own_study.ipynb` starts a study from your own survey exports."),
]

ANALYSIS_CELLS = [
    ("md", "# A worked analysis of the demo study\n\n"
           "The demo was simulated with known effects (`surveys/demo/truth.json`): perceptions "
           "of the other side grow 9 POMP points a year faster in the dialogue arm during the "
           "one-year programme and fade by 2 points a year after it. This notebook fits the "
           "plan's models, asks the questions a funder and a reviewer ask, and checks the "
           "answers against that truth."),
    SETUP,
    ("code", "summary = study.ingest(key)\nstudy.score()\nscores = study.scores()\n"
             "truth = json.loads((root / 'surveys' / 'demo' / 'truth.json').read_text())\n"
             "scores.head()"),
    ("md", "## Who answered\n\nParticipants with a score at each wave, by arm: attrition "
           "is heavier in the comparison arm, and depends on baseline perceptions (see "
           "`truth['attrition']`), which is why the models use every answer given, not only "
           "complete cases."),
    ("code", "scores.groupby(['wave', 'arm'], observed=True)['participant'].nunique()"
             ".unstack()"),
    ("md", "## Measurement\n\nReliability per construct and wave: McDonald's omega "
           "(total) with its bootstrap 95% interval, and Cronbach's alpha."),
    ("code", "study.reliability()[['construct', 'wave', 'n', 'omega_total', 'omega_ci_low', "
             "'omega_ci_high', 'alpha']].round(2).head(10)"),
    ("md", "## Which growth model the data support\n\nThe plan fits a linear growth model "
           "and a piecewise one (a change of slope when the programme ends). Likelihood-ratio "
           "test on maximum-likelihood refits, AIC and BIC:"),
    ("code", "results = study.fit_models()\n"
             "growth = results.compare_growth('perceptions')\n"
             "print('preferred:', growth.attrs['prefer'])\n"
             "growth[['formula', 'chisq', 'df', 'p_value', 'aic', 'bic']]"),
    ("md", "## The gap at each wave, and how much of it lasts\n\nFrom the piecewise model, "
           "the difference between the arms at each wave is a linear combination of its "
           "fixed effects: `arm + time × (time:arm) + post_time × (post_time:arm)`; "
           "`lincom` gives it with a Satterthwaite interval. The truth column is the gap the "
           "demo was simulated with."),
    ("code", "fit = results.fits['perceptions_durability']\n"
             "when = scores.groupby('wave')[['time', 'post_time']].mean()\n"
             "gaps = pd.concat([\n"
             "    fit.lincom({'arm[T.dialogue]': 1, 'time:arm[T.dialogue]': w.time,\n"
             "                'post_time:arm[T.dialogue]': w.post_time}, name=f'wave {wave}')\n"
             "    for wave, w in when.iterrows()], ignore_index=True)\n"
             "gaps['truth'] = [truth['effects']['perceptions']['gap_at_each_wave'][str(w)]\n"
             "                 for w in when.index]\n"
             "gaps['covered'] = (gaps.ci_low <= gaps.truth) & (gaps.truth <= gaps.ci_high)\n"
             "gaps[['term', 'estimate', 'ci_low', 'ci_high', 'truth', 'covered']].round(2)"),
    ("code", "assert gaps.covered.all(), 'an interval misses the simulated gap'\n"
             "end, last = gaps.estimate.iloc[1], gaps.estimate.iloc[-1]\n"
             "print(f'gap at the end of the programme {end:.1f} points; three years on '\n"
             "      f'{last:.1f} ({last / end:.0%} of it)')"),
    ("md", "## The same question without a growth curve\n\nThe two-way fixed-effects "
           "event study estimates the change in the gap since baseline at each wave with no "
           "assumption about the shape of change (standard errors clustered by participant). "
           "Its estimates should agree with the piecewise model's gaps above."),
    ("code", "event = results.fits['perceptions_event_study'].tidy()\n"
             "event[['term', 'estimate', 'ci_low', 'ci_high']].round(2)"),
    ("md", "## Standardized effect sizes\n\nHedges' g between the arms at each wave "
           "(positive: the dialogue arm scores higher), with its 95% interval."),
    ("code", "from trackii_eval.models.effects import hedges_g_by_wave\n\n"
             "hedges_g_by_wave(scores, 'perceptions')[['wave', 'n_dialogue', 'n_comparison', "
             "'g', 'ci_low', 'ci_high']].round(2)"),
    ("md", "## Per dialogue\n\nEach dialogue had its own facilitation; the demo simulated "
           "moderation quality per dialogue. Observed means against the truth:"),
    ("code", "moderation = scores.groupby('dialogue')['moderation'].mean().round(1).to_frame()\n"
             "moderation['truth'] = pd.Series(truth['effects']['moderation_mean_by_dialogue'])\n"
             "moderation"),
    ("md", "## The report\n\nEverything above, with human labels, tables of every "
           "model and disclosure control applied, in one HTML page (and PDF)."),
    ("code", "from trackii_eval.report.pdf import write_report_pdfs\n\n"
             "report = study.report()\npdfs = write_report_pdfs(report)\n"
             "[p.name for p in [report, *pdfs]]"),
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
    for i, (kind, text) in enumerate(cells):
        # fixed cell ids: the same cells give the same file (a clean diff when they change)
        nb.cells.append(nbf.v4.new_markdown_cell(text, id=f"cell-{i:02d}") if kind == "md"
                        else nbf.v4.new_code_cell(text, id=f"cell-{i:02d}"))
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbf.write(nb, HERE / name)


#: every notebook this script writes, by file name
NOTEBOOKS = {
    "00_quickstart.ipynb": QUICKSTART_CELLS,
    "01_demo_analysis.ipynb": ANALYSIS_CELLS,
    "02_own_study.ipynb": OWN_STUDY_CELLS,
}


def build() -> None:
    for name, cells in NOTEBOOKS.items():
        _write(cells, name)


if __name__ == "__main__":
    build()
