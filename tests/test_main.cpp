// tests/test_main.cpp — compiles Boost.Test into the test binaries from its headers, once.
// Every test_<area>.cpp includes <boost/test/unit_test.hpp> and links this object.
#define BOOST_TEST_MODULE retnet
#include <boost/test/included/unit_test.hpp>
