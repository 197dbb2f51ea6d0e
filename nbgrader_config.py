"""nbgrader configuration of the VAE course book (see book/instructors.md).

Masters (solutions + visible and hidden tests) live in solutions/<ps>/<ps>.ipynb; `make release`
writes the student versions into exercises/<ps>/.
"""

c = get_config()  # noqa: F821 (provided by nbgrader when it loads this file)

c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "exercises"

# A runaway cell (an infinite loop, a forgotten full-size training) ends here instead of
# blocking the whole grading run. Every assignment runs in well under two minutes on a CPU.
c.Execute.timeout = 120
c.Execute.interrupt_on_timeout = True

# nbgrader gives zero to a graded cell that writes anything to stderr. Warnings and progress
# bars of a correct answer go to stderr, so stderr output is dropped before grading; test cells
# fail through exceptions (assert), never through stderr.
c.IgnorePattern.enabled = True
c.IgnorePattern.pattern = r"[\s\S]*"


# A deleted test cell is put back from the gradebook, so it still runs and counts.
c.OverwriteCells.add_missing_cells = True

# Feedback shows neither the hidden tests nor the tracebacks that would quote them.
c.GenerateFeedback.preprocessors = [
    "nbgrader.preprocessors.GetGrades",
    "vaecourse.grading.HideHiddenTests",
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
]
