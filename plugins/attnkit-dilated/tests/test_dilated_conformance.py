from attnkit_dilated import Dilated

from attnkit.conformance import parametrize_with_checks


@parametrize_with_checks([Dilated])
def test_conformance(component, check):
    check(component)
