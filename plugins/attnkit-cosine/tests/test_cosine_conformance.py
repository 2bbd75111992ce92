from attnkit_cosine import Cosine

from attnkit.conformance import parametrize_with_checks


@parametrize_with_checks([Cosine])
def test_conformance(component, check):
    check(component)
