// bindings/c/tests/version_host.cpp: the C++ wrapper from a staged prefix,
// built only through pkg-config. Prints the version; exit 0 on success.
#include <mailoauth.hpp>

#include <iostream>

int main()
{
    try {
        mailoauth::context ctx(mailoauth::json::object({{"client_id", "00000000-0000-0000-0000-000000000000"}}));
        std::cout << "mailoauth " << mailoauth::version() << " via C++ (" << ctx.describe()["provider"].as_string()
                  << ")" << std::endl;
        return mailoauth::version() == MAILOAUTH_VERSION && mailoauth::abi_compatible() ? 0 : 1;
    } catch (const mailoauth::error &e) {
        std::cerr << e.what() << std::endl;
        return 1;
    }
}
