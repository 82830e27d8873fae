from pipeline_tools.cli import run

run()
