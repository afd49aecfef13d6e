# sprkit 0.1.0 certified optimum (branch and bound, gap <= 1e-9)
instance hard_g14_ar08_c2_r2.npz
lam0 0.7606166087331069
lam2 0.001
M 4.0
objective 24.108589481977706
bound 24.108589469923416
kept 0 1 3 4 6 7 8 9 13
checked scip 24.108589481977706
