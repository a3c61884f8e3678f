// A console test runner: "PASS name" / "FAIL name: …" / "SKIP name: reason"
// per test, then "N passed, N failed" (", N skipped") alone on the last
// line; exit code 1 on any failure or when nothing ran.
using System;
using System.Collections.Generic;
using System.Diagnostics;

namespace MailOAuth.Tests
{
    internal sealed class SkipException : Exception
    {
        internal SkipException(string reason) : base(reason) { }
    }

    internal static class Runner
    {
        private static readonly List<KeyValuePair<string, Action>> All = new List<KeyValuePair<string, Action>>();

        internal static void Test(string name, Action body) { All.Add(new KeyValuePair<string, Action>(name, body)); }

        internal static int Run(string only)
        {
            int passed = 0, failed = 0, skipped = 0;
            foreach (var t in All)
            {
                if (only != null && !t.Key.Contains(only)) continue;
                var sw = Stopwatch.StartNew();
                try
                {
                    t.Value();
                    passed++;
                    Console.WriteLine("PASS " + t.Key + " (" + sw.ElapsedMilliseconds + " ms)");
                }
                catch (SkipException s)
                {
                    skipped++;
                    Console.WriteLine("SKIP " + t.Key + ": " + s.Message);
                }
                catch (Exception e)
                {
                    failed++;
                    Console.WriteLine("FAIL " + t.Key + ": " + e);
                }
                Console.Out.Flush();
            }
            Console.WriteLine(passed + " passed, " + failed + " failed" + (skipped > 0 ? ", " + skipped + " skipped" : ""));
            return failed == 0 && passed > 0 ? 0 : 1;
        }
    }

    internal static class Assert
    {
        internal static void True(bool cond, string what)
        {
            if (!cond) throw new Exception("assertion failed: " + what);
        }

        internal static void Eq<T>(T expected, T actual, string what)
        {
            if (!Equals(expected, actual))
                throw new Exception("assertion failed: " + what + ": expected <" + expected + ">, got <" + actual + ">");
        }

        /// <summary>Runs <paramref name="body"/>, which must throw a MailOAuthException with <paramref name="code"/>.</summary>
        internal static MailOAuthException Code(int code, Action body, string what)
        {
            try
            {
                body();
            }
            catch (MailOAuthException e)
            {
                if (e.Code != code) throw new Exception("assertion failed: " + what + ": expected code " + code + ", got " + e);
                return e;
            }
            throw new Exception("assertion failed: " + what + ": expected MailOAuthException " + code + ", nothing thrown");
        }

        internal static T Throws<T>(Action body, string what) where T : Exception
        {
            try
            {
                body();
            }
            catch (T e)
            {
                return e;
            }
            catch (Exception e)
            {
                throw new Exception("assertion failed: " + what + ": expected " + typeof(T).Name + ", got " + e);
            }
            throw new Exception("assertion failed: " + what + ": expected " + typeof(T).Name + ", nothing thrown");
        }

        internal static void Contains(string haystack, string needle, string what)
        {
            if (haystack == null || haystack.IndexOf(needle, StringComparison.Ordinal) < 0)
                throw new Exception("assertion failed: " + what + ": <" + needle + "> not in <" + haystack + ">");
        }
    }
}
