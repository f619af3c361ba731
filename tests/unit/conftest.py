"""Options of the unit tests."""


def pytest_addoption(parser):
    parser.addoption("--update-golden", action="store_true", default=False,
                     help="rewrite the expected files under tests/golden/ from the current output"
                          " (then review the diff)")
